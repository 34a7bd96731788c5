# same specificity as a.hcl's rules: sorted path order breaks the tie
service "pay" { policy = "write" identity = "team:x" }
service "pay" { policy = "read" identity = "team:y" }
