"""The error hierarchy. The library raises these; only the CLI turns them into
one-line messages and exit codes (documented in the README)."""


class ReidctlError(Exception):
    """Base of every error reidctl raises on purpose."""

    exit_code = 1


class InputError(ReidctlError):
    """Bad user input: missing path, empty folder, no usable image."""

    exit_code = 2


class ModelError(ReidctlError):
    """A model or checkpoint that cannot be loaded or does not fit."""

    exit_code = 3


class StoreError(ReidctlError):
    """The vector database failed: unreachable, refused, inconsistent."""

    exit_code = 4


class CollectionNotFound(StoreError):
    """The named collection pair does not exist."""

    exit_code = 5


class FeatureSpaceMismatch(StoreError):
    """The collection holds vectors of another model, dimension or schema."""

    exit_code = 6
