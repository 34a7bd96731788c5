# Humans and automation that act on many services at once.
role "ops" {
  description = "platform on-call: manages every service in prod"
  identities  = ["team:ops", "spiffe://cluster/ns/ops/sa/*"]
}

role "auditors" {
  description = "security and finance auditors: read ledgers, never secrets"
  identities  = ["team:audit", "spiffe://cluster/ns/audit/sa/*"]
}
