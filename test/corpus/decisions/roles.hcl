role "ops" { identities = ["team:ops", "spiffe://c/ns/ops/sa/*", "spiffe://c/ns/{namespace}/sa/deployer"] }
role "readers" {
  identities = [
    "team:**",
    "anonymous",
  ]
}
settings { anonymous = true }
namespace_prefix "" { policy = "admin" identity = "role:ops" }
service_prefix "" { policy = "read" identity = "role:readers" }
