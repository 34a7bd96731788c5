service "pay" {
  policy =
  identity = "team:ops"
}
