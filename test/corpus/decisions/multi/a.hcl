service "pay" { policy = "read" identity = "role:team" }
service "pay" { policy = "read" identity = "team:x" }
