role "ops" {
  description = "the operators"
  identities = [
    "team:ops",
    "team:sre"
