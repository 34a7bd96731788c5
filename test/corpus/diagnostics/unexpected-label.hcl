settings "main" {
  default_policy = "deny"
}
