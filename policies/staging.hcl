# Staging: each workload may register itself and discover anything in staging.
namespace "staging" {
  service_prefix "" {
    policy      = "write"
    identity    = "spiffe://cluster/ns/staging/sa/{service}"
    description = "a workload registers only the service named like its service account"
  }

  service_prefix "" {
    policy   = "read"
    identity = "spiffe://cluster/ns/staging/sa/*"
  }

  policy   = "admin"
  identity = "team:ops"
}
