api "authorise" { identity = "team:ops" }
api "metrics" { identity = "team:ops" }
