service "pay" { policy = "read" identity = "SPIFFE://c/ns/prod/sa/pay" }
service "ord" { policy = "read" identity = "spiffe://Cluster/ns/prod" }
service "web" { policy = "read" identity = "spiffe:///ns/prod" }
service "api" { policy = "read" identity = "spiffe://c/ns//sa/x" }
service "db" { policy = "read" identity = "spiffe://c/ns/prod/" }
