"""Uploaded files (photos of grid reports): content-addressed storage, links to what uses them, access."""
