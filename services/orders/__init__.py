"""The orders service: each user's orders."""
