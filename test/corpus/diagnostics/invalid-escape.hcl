service "pay" {
  policy = "read"
  identity = "team:\ops"
  description = "bad \u12 escape"
}
service "ord" { policy = "read" identity = "team:\ud800" }
service "web" { policy = "read" identity = "team:\uDC00x" description = "pair \ud83d\ude00 ok, reversed \ude00\ud83d" }
