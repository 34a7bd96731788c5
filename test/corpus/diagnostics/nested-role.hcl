role "admins" { identities = ["team:root"] }
role "ops" {
  identities = ["team:ops", "role:admins"]
}
