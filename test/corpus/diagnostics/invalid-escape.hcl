service "pay" {
  policy = "read"
  identity = "team:\ops"
  description = "bad \u12 escape"
}
