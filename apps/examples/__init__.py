"""Example apps written with ``apps.sdk`` (docs/apps.md): each runs with one command against a server."""
