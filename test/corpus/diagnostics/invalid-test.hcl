service "pay" { policy = "read" identity = "team:ops" }
test "t1" {
  identity = ""
  action = "raed"
  resource = "svc:pay"
  namespace = "a b"
  source_ip = "10.0.0.256"
  expect = "allow"
}
