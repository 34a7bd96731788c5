namespace "prod" {
  identity = "team:ops"
}
namespace_prefix "st" {
  policy = "admin"
  service "pay" { policy = "read" identity = "team:dev" }
}
