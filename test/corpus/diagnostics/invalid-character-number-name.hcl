service "pay" {
  policy      = "read"
  identity    = "team:ops"
  description = 123abc
}
service "hex" {
  policy      = "read"
  identity    = "team:ops"
  description = 0x10
}
