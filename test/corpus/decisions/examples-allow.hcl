settings { default_policy = "allow" }

role "deployers" { identities = ["team:release", "spiffe://acme/ns/ci/sa/*"] }

service "inventory" {
  policy   = "write"
  identity = "spiffe://acme/ns/shop/sa/inventory"
  cidrs    = ["192.168.10.0/24"]
}
service "inventory" { policy = "read" identity = "spiffe://acme/ns/shop/sa/**" }
service_prefix "billing-" { policy = "read" identity = "team:finance" }
service "billing-keys" { policy = "deny" identity = "team:finance" }

namespace "shop" {
  policy   = "admin"
  identity = "role:deployers"
  service "cart" { policy = "write" identity = "spiffe://acme/ns/shop/sa/cart" }
}
namespace_prefix "sandbox-" {
  service_prefix "" { policy = "write" identity = "spiffe://acme/ns/{namespace}/sa/{service}" }
}
