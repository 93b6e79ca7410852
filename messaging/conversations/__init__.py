"""Conversations addressed to positions: position threads, unit groups, ad-hoc groups (issue 5)."""
