"""Settings built at the edge (the CLI) and passed down as plain frozen dataclasses."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from reidctl.errors import InputError, ModelError

if TYPE_CHECKING:  # torch is imported only where a device is resolved
    import torch

DEFAULT_URI = "./reidctl.db"
# Images per forward batch. On a CPU, 32 keeps each activation of a 256x128 input (~16 MB)
# under the C allocator's mapping ceiling (see reidctl.allocator); at 64 they are 33 MB,
# mapped and unmapped on every use, and the forward pass is slower (scripts/forward_speed.py).
DEFAULT_BATCH = 32
# What pymilvus connects to; anything else is refused before a connection is tried.
SERVER_SCHEMES = ("http", "https", "tcp")
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def resolve_device(requested: str | torch.device = "auto") -> torch.device:
    """The torch device to compute on; ``auto`` picks CUDA when a GPU is present, else the CPU.

    Args:
        requested: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.

    Raises:
        InputError: any other text.
        ModelError: CUDA requested but absent.
    """
    import torch

    if isinstance(requested, torch.device):
        dev = requested
    elif requested == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif _DEVICE.fullmatch(str(requested)):
        dev = torch.device(requested)
    else:
        raise InputError(f"--device must be auto, cpu or cuda (or cuda:N), got {requested!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {requested!s} requested but CUDA is not available")
    return dev


def is_lite_uri(uri: str) -> bool:
    """True for an embedded Milvus Lite file (not a server URL or a ``unix:`` socket).

    The one test of "Lite or server" for a URI: everything that chooses between the two
    asks here, so that they cannot disagree on a URI.
    """
    return "://" not in uri and not uri.startswith("unix:")


@dataclass(frozen=True)
class Connection:
    """How to reach Milvus. Secrets never appear in ``repr`` or in messages.

    Attributes:
        uri: a Milvus Lite file (``./reidctl.db``) or a server (``http://host:19530``,
            ``https://host:443``).
        token: an API key or ``user:password``.
        user, password: credentials, as an alternative to ``token``.
        db_name: the Milvus database (server only; default database when None).
        tls: use TLS (implied by an ``https://`` URI or a CA / client certificate).
        ca_file: PEM file of the CA (or the server certificate) to verify the server.
        server_name: the name in the server certificate, when it differs from the host.
        client_cert, client_key: PEM files for mutual TLS.
        timeout: seconds allowed per call, connecting included.
    """

    uri: str = DEFAULT_URI
    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    db_name: str | None = None
    tls: bool = False
    ca_file: str | None = None
    server_name: str | None = None
    client_cert: str | None = None
    client_key: str | None = field(default=None, repr=False)
    timeout: float = 30.0

    @property
    def is_lite(self) -> bool:
        """True for an embedded Milvus Lite file (see :func:`is_lite_uri`)."""
        return is_lite_uri(self.uri)

    @property
    def secure(self) -> bool:
        """Whether the connection uses TLS."""
        return (self.tls or self.uri.startswith("https://") or bool(self.ca_file)
                or bool(self.client_cert))

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must be masked wherever they could be printed."""
        out = [s for s in (self.token, self.password) if s]
        if self.token and ":" in self.token:
            out.append(self.token.split(":", 1)[1])
        return tuple(sorted({s for s in out if s}, key=len, reverse=True))

    def with_uri(self, uri: str) -> Connection:
        """The same settings for another URI."""
        return replace(self, uri=uri)

    def validated(self) -> Connection:
        """This connection, once its timeout and server URI are known to be usable.

        Checked before anything connects, so that a typo is reported as such rather
        than as a failure to connect (the path of a Lite file is checked when it is
        opened: see :mod:`reidctl.store._lite`).

        Raises:
            InputError: the timeout is not a finite number of seconds above 0, or the
                server URI cannot be parsed, has an unknown scheme, no host, or a port
                that is not a number in 1..65535.
        """
        _check_timeout(self.timeout)
        if not self.is_lite and not self.uri.startswith("unix:"):
            _check_server_uri(self.uri)
        return self


def _check_timeout(timeout: object) -> None:
    try:
        seconds = float(timeout)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    # inf or nan would pass every comparison the store makes and end as a hung or failed
    # call that reads like a busy database
    if not (math.isfinite(seconds) and seconds > 0):
        raise InputError(f"--timeout (REIDCTL_TIMEOUT, timeout in reidctl.toml) must be a "
                         f"finite number of seconds above 0, got {timeout!r}")


# user[:password]@ right after a scheme, and user:password@ at the start of a word
# (a scheme-less "alice:pw@host:19530"); a path like /a/b:c@d.db is left alone.
_USERINFO = re.compile(r"(?<=://)[^\s/@]+@|(?<![^\s'\"(\[=,])[^\s/@'\":]+:[^\s/@'\"]+@")


def redact(text: str) -> str:
    """``text`` with the user info of every URI in it masked, with or without a scheme:
    ``http://u:p@host`` -> ``http://***@host``, ``u:p@host:19530`` -> ``***@host:19530``.
    The one credential pattern every message and output goes through."""
    return _USERINFO.sub("***@", str(text))


def _check_server_uri(uri: str) -> None:
    shown = redact(uri)
    hint = ("use http://HOST:PORT or https://HOST:PORT for a server, or a file path "
            "ending in .db for Milvus Lite")
    try:
        parts = urlsplit(uri)
        port = parts.port  # parsed lazily: raises ValueError for 'abc' or 70000
    except ValueError as e:
        detail = redact(str(e))  # urllib may quote the netloc
        raise InputError(f"bad URI {shown!r}: {detail} ({hint})") from None
    if parts.scheme.lower() not in SERVER_SCHEMES:
        raise InputError(f"bad URI {shown!r}: unknown scheme {parts.scheme!r} ({hint})")
    if not parts.hostname:
        raise InputError(f"bad URI {shown!r}: no host ({hint})")
    if port == 0:  # pymilvus would quietly replace it by the default port
        raise InputError(f"bad URI {shown!r}: port 0 ({hint})")
