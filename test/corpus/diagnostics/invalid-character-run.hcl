service "pay" {
  policy   = "read"
  identity = "team:ops"
}
@@@@@@@@ ​​​​​​
