service "two" "labels" {
  policy = "read"
  identity = "team:ops"
}
