"""attnlab.interpret."""
