/* outer /* inner */ */
service "pay" {
  policy   = "read"
  identity = "team:ops"
}
