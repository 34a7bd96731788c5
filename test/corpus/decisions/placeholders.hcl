service_prefix "" { policy = "write" identity = "spiffe://c/ns/{namespace}/sa/{service}" }
namespace_prefix "" {
  policy = "read"
  identity = "spiffe://c/ns/{namespace}/sa/{service}"
  service_prefix "" { policy = "write" identity = "spiffe://c/ns/{namespace}/sa/{service}" }
}
namespace "prod" { policy = "admin" identity = "spiffe://c/ns/{namespace}/sa/admin" }
service "web" { policy = "read" identity = "team:{service}*" }
