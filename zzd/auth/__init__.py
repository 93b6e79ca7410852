"""Authentication: password hashing and JWT access tokens."""
