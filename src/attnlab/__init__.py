"""attnlab: attention mechanisms for PyTorch, one tested core and fast engines."""

__version__ = "0.1.0"
