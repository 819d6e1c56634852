"""Complete networks assembled from :mod:`attnlab.nn`."""

from attnlab.models.classifier import POOLINGS, TextClassifier

__all__ = ["POOLINGS", "TextClassifier"]
