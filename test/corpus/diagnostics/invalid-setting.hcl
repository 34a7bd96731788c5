settings {
  default_policy = "Allow"
  trust_domain = "spiffe://c"
}
