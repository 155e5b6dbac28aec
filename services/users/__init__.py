"""The users service: profiles, keyed by the token subject."""
