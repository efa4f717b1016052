"""The `registrar` command line."""
