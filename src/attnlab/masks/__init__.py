"""attnlab.masks."""
