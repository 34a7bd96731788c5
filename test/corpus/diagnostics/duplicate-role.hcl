role "ops" { identities = ["team:ops"] }
role "ops" { identities = ["team:sre"] }
