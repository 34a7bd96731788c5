service "pay" {
  policy = "read"
  identity = "team:ops"
  identities = ["team:dev"]
}
