settings { default_policy = "allow" }
service "pay" { policy = "write" identity = "team:pay" }
service "pay" { policy = "read" identity = "team:ord" }
