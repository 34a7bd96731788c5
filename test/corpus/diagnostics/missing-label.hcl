service {
  policy = "read"
  identity = "team:ops"
}
role { identities = ["team:ops"] }
