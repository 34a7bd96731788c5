service "pay" {
  polcy = "read"
  identity = "team:ops"
  idenity = "team:dev"
  color = "blue"
}
