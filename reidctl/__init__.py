"""reidctl: large-scale person re-identification as image retrieval."""

__version__ = "0.1.0"
