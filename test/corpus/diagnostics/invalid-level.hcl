service "pay" {
  policy = "wirte"
  identity = "team:ops"
}
service "ord" { policy = "none" identity = "team:ops" }
