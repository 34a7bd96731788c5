# Production: every workload registers only itself; consumers get read on what they call.
namespace "prod" { # pdp:allow wildcard-namespace-grant -- role ops includes the ops automation (spiffe://cluster/ns/ops/sa/*) by design
  policy      = "admin"
  identity    = "role:ops"
  description = "ops can manage all services in prod"

  # payment-service can only register itself (registry poisoning defence)
  service "payment-service" {
    policy   = "write"
    identity = "spiffe://cluster/ns/prod/sa/payment"
  }

  # order-service discovers payment-service
  service "payment-service" {
    policy   = "read"
    identity = "spiffe://cluster/ns/prod/sa/order"
  }

  service "order-service" {
    policy   = "write"
    identity = "spiffe://cluster/ns/prod/sa/order"
  }

  # the storefront and user-service look orders up
  service "order-service" {
    policy     = "read"
    identities = ["spiffe://cluster/ns/prod/sa/user", "spiffe://cluster/ns/prod/sa/storefront"]
  }

  service "user-service" {
    policy   = "write"
    identity = "spiffe://cluster/ns/prod/sa/user"
  }

  service "user-service" {
    policy     = "read"
    identities = ["spiffe://cluster/ns/prod/sa/order", "spiffe://cluster/ns/prod/sa/storefront"]
  }

  # ledgers are written by payment, from the payment subnet only
  service_prefix "ledger-" {
    policy   = "write"
    identity = "spiffe://cluster/ns/prod/sa/payment"
    cidrs    = ["10.20.0.0/16", "fd00:20::/32"]
  }

  service_prefix "ledger-" {
    policy   = "read"
    identity = "role:auditors"
  }

  # auditors never see secrets, whatever else grants them
  service_prefix "secrets-" {
    policy   = "deny"
    identity = "role:auditors"
  }

  service "ledger-secrets" {
    policy   = "deny"
    identity = "role:auditors"
  }
}
