"""Settings built at the edge (the CLI) and passed down as plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

DEFAULT_URI = "./reidctl.db"
# Images per forward batch. On a CPU, 32 keeps each activation of a 256x128 input (~16 MB)
# under the C allocator's mapping ceiling (see reidctl.allocator); at 64 they are 33 MB,
# mapped and unmapped on every use, and the forward pass is slower (scripts/forward_speed.py).
DEFAULT_BATCH = 32


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
        """True for an embedded Milvus Lite file."""
        return "://" not in self.uri

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
