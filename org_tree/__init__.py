"""The org tree: units, roles, positions, persons and who holds what.

This is the bottom layer of ZZD. It knows nothing of HTTP, WebSockets,
configuration files or the broker; everything above it (``messaging``,
``apps``, ``zzd``) may import it, never the other way round.
"""
