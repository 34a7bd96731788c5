settings {
  default_policy = "permit"
}

service "pay" {
  polcy = "read"
  identity = "role:opps"
}

service "ord" {
  policy = "reed"
  identity = "spiffe://c/ns/prod/sa/ord"
  cidrs = ["10.0.0.0/8", "10.0.0.0/40"]
}

namespace "prod" {
  service "x" { policy = "read" identities = [] }
  servic "y" { policy = "read" identity = "team:ops" }
}

role "ops" { identities = ["team:ops"] }
