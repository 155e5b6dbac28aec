"""Passgate's backend services: auth (credentials and keys), users (profiles), orders."""
