# Who may call the PDP itself when authentication is on (TLS with client certificates, or tokens).
api "authorize" {
  description = "the PEPs: service registry and gateway"
  identities  = [
    "spiffe://cluster/ns/platform/sa/registry",
    "spiffe://cluster/ns/platform/sa/gateway",
  ]
}

api "admin" {
  identity = "role:ops"
}

api "audit" {
  identities = ["role:ops", "role:auditors"]
}
