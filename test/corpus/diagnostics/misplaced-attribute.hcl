policy = "read"
service "pay" { policy = "read" identity = "team:ops" }
