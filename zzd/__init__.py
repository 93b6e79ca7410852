"""ZZD server shell: ASGI app, configuration, auth, WebSocket gateway and CLI.

The shell translates; the domain (``apps``, ``messaging``, ``org_tree``) decides.
"""

__version__ = "0.1.0"
