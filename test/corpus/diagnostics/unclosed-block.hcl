namespace "prod" {
  policy = "read"
  identity = "team:ops"
  service "pay" {
    policy = "write"
    identity = "team:dev"
