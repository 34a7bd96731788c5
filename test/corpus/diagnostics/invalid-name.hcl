service "pay service" { policy = "read" identity = "team:ops" }
namespace "" { policy = "read" identity = "team:ops" }
service_prefix "a/b" { policy = "read" identity = "team:ops" }
role "my role" { identities = ["team:ops"] }
