role "team" { identities = ["team:x", "team:y"] }
settings { default_policy = "allow" }
service "pay" { policy = "deny" identity = "team:z" }
service "pay" { policy = "deny" identity = "team:*" cidrs = ["10.0.0.0/8"] }
