service "pub" { policy = "read" identity = "anonymous" }
service "pub" { policy = "write" identity = "*" }
service "all" { policy = "read" identity = "**" }
