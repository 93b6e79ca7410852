"""What every package of ZZD stands on: errors, clock, database, identity tables, sessions, text checks.

It imports none of ``org_tree``, ``messaging``, ``apps`` or ``zzd`` (import-linter keeps it at the
bottom), so that "org tree" means the tree and nothing else: a notice or a chat message reaches
the database and the error model without going through the org package.
"""
