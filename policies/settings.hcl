# Deny unless a rule grants, never answer for unauthenticated subjects, and flag identities that
# do not belong to our SPIFFE trust domain.
settings {
  default_policy = "deny"
  anonymous      = false
  trust_domain   = "cluster"
}
