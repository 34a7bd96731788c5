service "pay" policy = "read"
