settings { default_policy = "deny" }
role "ops" { identities = ["team:ops"] }
