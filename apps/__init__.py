"""Apps: third-party systems that push work notices and receive events (open API).

Sits between the shell and messaging: ``zzd → apps → messaging → org_tree``.
"""
