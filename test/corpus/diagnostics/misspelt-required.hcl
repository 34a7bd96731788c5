service "a" {
  polcy    = "read"
  identity = "team:x"
}
service "b" {
  policy    = "read"
  identites = ["team:x"]
}
service "c" {
  identity   = "team:x"
  descripton = "a misspelt optional attribute does not stand for the missing policy"
}
test "t" {
  acton    = "read"
  identity = "team:x"
  resource = "service:a"
  expect   = "ALLOW"
}
