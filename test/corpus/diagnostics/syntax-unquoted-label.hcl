service payment { policy = "read" identity = "team:ops" }
namespace "prod" {
  service_prefix pay {
    policy = "read"
    identity = "team:ops"
  }
}
settings main { default_policy = "deny" }
