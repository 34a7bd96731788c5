api {
  identity = "team:ops"
}
api "admin" {
  identity   = "team:ops"
  identities = ["team:ops"]
  policy     = "read"
}
namespace "prod" {
  api "audit" { identity = "team:ops" }
}
