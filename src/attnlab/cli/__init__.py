"""attnlab.cli."""
