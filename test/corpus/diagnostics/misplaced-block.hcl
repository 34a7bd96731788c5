service "pay" {
  policy = "read"
  identity = "team:ops"
  service "inner" { policy = "read" identity = "team:ops" }
}
namespace "prod" {
  namespace "inner" { policy = "read" identity = "team:ops" }
  role "r" { identities = ["team:ops"] }
}
