settings {
  anonymous      = true
  default_policy = "allow"
}
service "pub" { policy = "read" identity = "anonymous" }
service "priv" { policy = "read" identity = "*" }
service_prefix "p" { policy = "deny" identity = "anonymous" cidrs = ["10.66.0.0/16"] }
service "glob" { policy = "read" identity = "**" }
service "star" { policy = "read" identity = "*" }
