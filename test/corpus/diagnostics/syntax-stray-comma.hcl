service "a" { policy = "read", identity = "a" }
role "r" { identities = ["a",, "b"] }
role "s" { identities = [, "b"] }
role "t" { identities = ["a"], description = "x" }
