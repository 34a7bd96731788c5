service "pay" {
  policy   = "read"
  /* the identity is below, and so is the `}` this comment swallows
  identity = "team:ops"
}
