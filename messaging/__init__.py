"""Messaging: per-person event streams, conversations and delivery hints.

Depends on ``org_tree`` only. Knows nothing of HTTP, WebSockets or config.
"""
