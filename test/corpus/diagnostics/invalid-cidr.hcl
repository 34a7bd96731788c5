service "pay" {
  policy = "read"
  identity = "team:ops"
  cidrs = ["10.0.0.1", "10.0.0.0/33", "fd00::/129", "10.0.0/8", "banana/8", "2001:db8::1"]
}
service "ord" {
  policy = "read"
  identity = "team:ops"
  cidrs = ["not-a-cidr", "10.0.0.0/", "10.0.0.0/x", "/24"]
}
