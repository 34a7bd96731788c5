test "incomplete" {
  identity = "team:ops"
}
