service "pay" { policy = "read" identity = "team:ops" }
/* this comment never ends
service "ord" { policy = "read" identity = "team:ops" }
