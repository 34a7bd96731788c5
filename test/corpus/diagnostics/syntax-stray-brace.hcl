service "pay" { policy = "read" identity = "team:ops" }
}
service "ord" { policy = "read" identity = "team:ops" }
