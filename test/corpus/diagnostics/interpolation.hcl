service "pay" {
  policy = "read"
  identity = "spiffe://c/ns/${namespace}/sa/pay"
}
