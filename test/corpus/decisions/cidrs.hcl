service "db" {
  policy = "write"
  identity = "team:app"
  cidrs = ["10.0.0.0/8", "2001:db8::/32"]
}
service "db" { policy = "read" identity = "team:app" cidrs = ["192.168.1.7/32", "fd00::7/128"] }
service "cache" { policy = "admin" identity = "team:app" cidrs = ["0.0.0.0/0"] }
service "queue" { policy = "admin" identity = "team:app" cidrs = ["::/0"] }
service "logs" { policy = "read" identity = "team:app" cidrs = ["::ffff:10.0.0.0/104"] }
