service "pay" { policy = "read" identity = "team:ops" }
test "anonymous without the setting" {
  action = "read"
  resource = "service:pay"
  expect = "DENY"
}
test "contradicting namespace" {
  identity = "team:ops"
  action = "read"
  resource = "namespace:a/*"
  namespace = "b"
  expect = "DENY"
}
