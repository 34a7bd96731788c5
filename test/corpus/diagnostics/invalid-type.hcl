service "pay" {
  policy = ["read"]
  identities = "team:ops"
}
settings { anonymous = "true" }
service "ord" { policy = "read" identity = ["team:a", "team:b"] cidrs = [10] }
role "r" { identities = ["team:a", true, ["team:b"]] }
