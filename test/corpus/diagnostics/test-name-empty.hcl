service "a" { policy = "read" identity = "team:x" }
test "" {
  identity = "team:x"
  action   = "read"
  resource = "service:a"
  expect   = "ALLOW"
}
test "" {
  identity = "team:y"
  action   = "read"
  resource = "service:a"
  expect   = "DENY"
}
test "  " {
  description = "description is accepted in a test block (an extension)"
  identity    = "team:x"
  action      = "write"
  resource    = "service:a"
  expect      = "DENY"
}
