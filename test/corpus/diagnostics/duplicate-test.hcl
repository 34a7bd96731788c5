test "ops reads" { identity = "team:ops" action = "read" resource = "service:pay" expect = "DENY" }
test "ops reads" { identity = "team:ops" action = "read" resource = "service:ord" expect = "DENY" }
