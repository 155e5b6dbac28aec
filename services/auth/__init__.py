"""The auth service: the only holder of credentials and private signing keys."""
