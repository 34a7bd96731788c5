service "pay" { policy = "read" identity = "" }
service "ord" { policy = "read" identity = "team:***" }
service "web" { policy = "read" identity = "team:{user}" }
service "api" { policy = "read" identity = "role:bad name" }
api "authorize" { identity = "spiffe://c/ns/{namespace}/sa/x" }
service "spf" { policy = "read" identity = "spiffe://c/ns/{namespce}/sa/x" }
service "brc" { policy = "read" identity = "spiffe://c/ns/x}" }
