"""Error translation: one line, no secrets, the right reidctl type."""

from __future__ import annotations

import grpc
from pymilvus.exceptions import MilvusException

from reidctl.config import redact
from reidctl.errors import CollectionNotFound, StoreError
from reidctl.store._wrap import scrub, secrets_of, translate


def test_redact_and_scrub() -> None:
    assert redact("https://bob:hunter22@db.example:19530/x") == "https://***@db.example:19530/x"
    secrets = secrets_of("bob:hunter22")
    assert "hunter22" in secrets and "bob" not in secrets
    line = scrub("failed\n  token bob:hunter22 at http://bob:hunter22@h:1\n" + "x" * 500, secrets)
    assert "hunter22" not in line and "\n" not in line and len(line) <= 240


def test_translate_types() -> None:
    missing = MilvusException(code=100, message="collection 'g_global' does not exist")
    assert isinstance(translate(missing, "query g_global", "u", (), 3), CollectionNotFound)

    class Deadline(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.DEADLINE_EXCEEDED

        def details(self) -> str:
            return "Deadline Exceeded"

    err = translate(Deadline(), "search g_global", "u", (), 3)
    assert type(err) is StoreError and "timed out after 3s" in str(err)
