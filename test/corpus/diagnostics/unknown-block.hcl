servce "pay" {
  policy = "read"
  identity = "team:ops"
}
namespace "prod" {
  servise_prefix "" { policy = "read" identity = "team:ops" }
}
extra "x" {
  service "a" {
    policy = "read"
    identity = "team:x"
  }
}
