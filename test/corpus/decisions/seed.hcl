# payment-service can only register itself
service "payment-service" {
  policy = "write"
  identity = "spiffe://cluster/ns/prod/sa/payment"
}

# order-service can discover payment-service
service "payment-service" {
  policy = "read"
  identity = "spiffe://cluster/ns/prod/sa/order"
}

# ops team can manage all services
namespace "prod" {
  policy = "admin"
  identity = "team:ops"
}
