"""The Passgate gateway: verifies each access token once, applies CORS, forwards to backends."""
