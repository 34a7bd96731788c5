role "operators" { identities = ["team:ops"] }
service "pay" { policy = "read" identity = "role:operator" }
service "ord" { policy = "read" identities = ["team:x", "role:nobody"] }
