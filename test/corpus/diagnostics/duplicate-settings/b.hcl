# second settings
settings { anonymous = true }
role "ops" { identities = ["team:sre"] }
service "pay" { policy = "read" identity = "role:ops" }
