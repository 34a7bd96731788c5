service "pay" {
  policy = "read"
  identities = ["team:ops" "team:dev"]
}
