service "pay" {
  policy = "read"
}
service "ord" {
  policy = "read"
  identities = []
}
