service "a" {
  policy   = "read"
  identity = "team:a\u{41}"
}
role "r" { identities = ["team:\q{service}"] }
