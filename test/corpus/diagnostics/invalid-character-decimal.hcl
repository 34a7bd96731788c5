service "pay" {
  policy      = "read"
  identity    = "team:ops"
  description = 1.5
}
