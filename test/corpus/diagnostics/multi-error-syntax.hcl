service "a" {
  policy = "read"
  identity "team:ops"
}

service "b" {
  policy = "read" identity = "team:ops"
}

service "c" {
  policy = = "read"
  identity = "team:ops"
}

service "d" { policy = "read" identity = "team:ops" }
service "e" { policy = "read" identity = "team:ops" identity = "x" }
