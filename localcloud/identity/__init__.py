"""The local stack's token issuer: test ID tokens that name a principal, for the local registry API only."""
