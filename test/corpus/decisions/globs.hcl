service "a" { policy = "read" identity = "spiffe://c/ns/*/sa/web" }
service "b" { policy = "read" identity = "spiffe://c/**/web" }
service "c" { policy = "read" identity = "spiffe://c/ns/prod/sa/web-*" }
service "d" { policy = "read" identity = "team:a.b" }
service "e" { policy = "read" identity = "team:(x|y)*" }
service "f" { policy = "read" identity = "**" }
