service "a" { policy = "read" identity = "team:ops" } ;
service "b" { policy = "r\ead" identity = "team:${x}" }
service "c" { policy = "read" identity = "team:ops" } @
