role "ops" {
  identities = ["team:ops", "team:sre"
}
service "a" {
  policy = "read"
  identities = ["team:ops"
  description = "x"
}
