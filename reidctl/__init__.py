"""reidctl: large-scale person re-identification as image retrieval."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("reidctl")  # the installed distribution's, set in pyproject.toml
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
