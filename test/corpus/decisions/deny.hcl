namespace_prefix "" { policy = "admin" identity = "team:ops" }
namespace "prod" {
  service_prefix "" { policy = "deny" identity = "team:ops" cidrs = ["0.0.0.0/0"] }
  service "vault" { policy = "deny" identity = "team:*" }
}
service "pay" { policy = "admin" identity = "team:ops" }
service "pay" { policy = "deny" identity = "**" }
service_prefix "pa" { policy = "deny" identity = "team:ops" }
namespace "staging" {
  policy = "deny"
  identities = ["team:intern"]
  service "docs" { policy = "read" identity = "team:intern" }
}
