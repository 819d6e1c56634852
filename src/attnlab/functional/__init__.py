"""attnlab.functional."""
