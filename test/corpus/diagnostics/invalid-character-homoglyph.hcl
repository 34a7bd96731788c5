service "pay" {
  pоlicy   = "read"
  identity = "team:ops"
}
