namespace "prod" {
  policy = "read"
  identity = "team:dev"
  service "pay" { policy = "write" identity = "team:dev" }
  service_prefix "pay-" { policy = "admin" identity = "team:dev" }
}
namespace "staging" {
  service_prefix "" { policy = "admin" identity = "team:dev" }
}
namespace_prefix "prod-" {
  policy = "write"
  identity = "team:sre"
  service "pay" { policy = "admin" identity = "team:sre" }
}
service "pay" { policy = "admin" identity = "team:dev" }
