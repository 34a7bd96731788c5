service "pay" {
  identity = "team:ops"
}
service_prefix "" { identities = ["team:dev"] }
