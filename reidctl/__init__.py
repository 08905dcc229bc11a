"""reidctl: large-scale person re-identification as image retrieval."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("reidctl")  # the installed distribution's, set in pyproject.toml
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


# The Python API (reidctl/api.py), imported on first use so that `import reidctl` stays cheap.
_API = ("Gallery", "GalleryInfo", "ImageNotFound", "ImageRecord", "SearchHit", "SearchResult",
        "StageTimes", "tune_allocator", "where")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> object:
    """``reidctl.Gallery`` and the rest of :data:`_API`, from :mod:`reidctl.api`."""
    if name in _API:
        from reidctl import api

        return getattr(api, name)
    raise AttributeError(f"module 'reidctl' has no attribute {name!r}")
