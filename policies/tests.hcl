# `pdp test policies/` runs these; the server ignores them.
test "payment registers itself" {
  identity  = "spiffe://cluster/ns/prod/sa/payment"
  action    = "write"
  resource  = "service:payment-service/payment-1"
  namespace = "prod"
  expect    = "ALLOW"
}

test "order discovers payment" {
  identity  = "spiffe://cluster/ns/prod/sa/order"
  action    = "read"
  resource  = "service:payment-service"
  namespace = "prod"
  expect    = "ALLOW"
}

test "order cannot register as payment" {
  identity  = "spiffe://cluster/ns/prod/sa/order"
  action    = "write"
  resource  = "service:payment-service"
  namespace = "prod"
  expect    = "DENY"
}

test "unknown workload cannot poison the registry" {
  identity  = "spiffe://cluster/ns/prod/sa/attacker"
  action    = "write"
  resource  = "service:payment-service"
  namespace = "prod"
  expect    = "DENY"
}

test "ops administers prod" {
  identity = "team:ops"
  action   = "admin"
  resource = "namespace:prod/*"
  expect   = "ALLOW"
}

test "ops has nothing of its own in default" {
  identity = "team:ops"
  action   = "read"
  resource = "service:payment-service"
  expect   = "DENY"
}

test "auditors read ledgers" {
  identity  = "team:audit"
  action    = "read"
  resource  = "service:ledger-payments"
  namespace = "prod"
  expect    = "ALLOW"
}

test "auditors never read secrets" {
  identity  = "spiffe://cluster/ns/audit/sa/reporter"
  action    = "read"
  resource  = "service:ledger-secrets"
  namespace = "prod"
  expect    = "DENY"
}

test "payment writes ledgers from its subnet" {
  identity  = "spiffe://cluster/ns/prod/sa/payment"
  action    = "write"
  resource  = "service:ledger-payments"
  namespace = "prod"
  source_ip = "10.20.3.4"
  expect    = "ALLOW"
}

test "payment cannot write ledgers from elsewhere" {
  identity  = "spiffe://cluster/ns/prod/sa/payment"
  action    = "write"
  resource  = "service:ledger-payments"
  namespace = "prod"
  source_ip = "192.0.2.7"
  expect    = "DENY"
}

test "staging workload registers itself" {
  identity  = "spiffe://cluster/ns/staging/sa/cart"
  action    = "write"
  resource  = "service:cart"
  namespace = "staging"
  expect    = "ALLOW"
}

test "staging workload cannot register another" {
  identity  = "spiffe://cluster/ns/staging/sa/cart"
  action    = "write"
  resource  = "service:payment-service"
  namespace = "staging"
  expect    = "DENY"
}

test "prod workloads cannot reach staging" {
  identity  = "spiffe://cluster/ns/prod/sa/order"
  action    = "read"
  resource  = "service:payment-service"
  namespace = "staging"
  expect    = "DENY"
}

test "order registers itself" {
  identity  = "spiffe://cluster/ns/prod/sa/order"
  action    = "write"
  resource  = "service:order-service/order-1"
  namespace = "prod"
  expect    = "ALLOW"
}

test "storefront looks orders up" {
  identity  = "spiffe://cluster/ns/prod/sa/storefront"
  action    = "read"
  resource  = "service:order-service"
  namespace = "prod"
  expect    = "ALLOW"
}

test "user registers itself" {
  identity  = "spiffe://cluster/ns/prod/sa/user"
  action    = "write"
  resource  = "service:user-service"
  namespace = "prod"
  expect    = "ALLOW"
}

test "order looks users up" {
  identity  = "spiffe://cluster/ns/prod/sa/order"
  action    = "read"
  resource  = "service:user-service"
  namespace = "prod"
  expect    = "ALLOW"
}

test "auditors never read any secrets- service" {
  identity  = "team:audit"
  action    = "read"
  resource  = "service:secrets-vault"
  namespace = "prod"
  expect    = "DENY"
}

test "ops administers staging" {
  identity  = "team:ops"
  action    = "admin"
  resource  = "namespace:staging/*"
  namespace = "staging"
  expect    = "ALLOW"
}
