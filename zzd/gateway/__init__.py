"""The WebSocket gateway: a sans-I/O protocol, a thin socket adapter, and the hub."""
