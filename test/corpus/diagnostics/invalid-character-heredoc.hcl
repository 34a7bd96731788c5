service "pay" {
  policy      = "read"
  identity    = "team:ops"
  description = <<EOT
hello
EOT
}
