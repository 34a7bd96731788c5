service_prefix "" { policy = "read" identity = "team:a" }
service_prefix "pay" { policy = "write" identity = "team:a" }
service_prefix "pay-" { policy = "admin" identity = "team:a" }
service "pay-api" { policy = "read" identity = "team:a" }
namespace_prefix "" {
  service_prefix "" { policy = "read" identity = "team:b" }
}
namespace_prefix "prod" {
  service_prefix "" { policy = "write" identity = "team:b" }
}
namespace_prefix "prod-" { policy = "admin" identity = "team:b" }
namespace "prod-eu" { policy = "read" identity = "team:b" }
