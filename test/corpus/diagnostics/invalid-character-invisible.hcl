service "a" {
  policy = "read"
  identity = "team:ops"​
}﻿
