service "pay" {
  policy      = "read"
  identity    = "team:ops"
  description = "costs $${price}"
}
