"""No secret is ever printed: URI user info (with or without a scheme), ``--token`` and
``--password``, whether they come from an option, a ``REIDCTL_*`` environment variable
or ``reidctl.toml``, in tables, ``--json``, one-line errors and the ``-v`` log.

Each case uses its own secret strings (reidctl remembers secrets for the life of the
process, so a shared string could be masked thanks to an earlier case)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from reidctl.cli.main import app
from tests.cli_helpers import RUNNER_ENV, lite_gallery

runner = CliRunner()
REIDCTL = Path(sys.executable).with_name("reidctl")
DOWN = "127.0.0.1:9"  # nothing listens there: the connection fails fast
SOURCES = ("option", "environment", "config")


def _secret(kind: str) -> str:
    return f"{kind}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory, val_images: list[Path]) -> Path:
    """A Lite database with the pair 'gallery' (2 val images)."""
    return lite_gallery(tmp_path_factory.mktemp("secrets-gallery"), val_images[:2])


class Setup:
    """Command lines with the given settings placed in one source: options, environment
    variables or a reidctl.toml (top-level keys, and ``[command]`` tables)."""

    def __init__(self, source: str, tmp_path: Path, *, uri: str | None = None,
                 token: str | None = None, password: str | None = None,
                 tables: dict[str, dict[str, str]] | None = None) -> None:
        self.source, self.uri, self.token, self.password = source, uri, token, password
        self.env: dict[str, str | None] = dict(RUNNER_ENV)
        self.top: list[str] = []
        self.cmd: list[str] = []
        if source == "option":
            self.top += ["--password", password] if password else []
            self.cmd += ["--token", token] if token else []
            self.cmd += ["--uri", uri] if uri else []
        elif source == "environment":
            self.env |= {k: v for k, v in (("REIDCTL_PASSWORD", password),
                                           ("REIDCTL_TOKEN", token), ("REIDCTL_URI", uri)) if v}
        lines = [f'{k} = "{v}"' for k, v in (("password", password), ("token", token),
                                             ("uri", uri)) if v and source == "config"]
        for name, table in (tables or {}).items():
            lines += [f"[{name}]", *(f'{k} = "{v}"' for k, v in table.items())]
        if lines:
            config = tmp_path / "reidctl.toml"
            config.write_text("\n".join(lines) + "\n", encoding="utf-8")
            self.top += ["--config", str(config)]

    def run(self, command: str, *args: str, verbose: bool = False,
            timeout: str = "60") -> Result:
        """Runs reidctl (``timeout``: seconds per database call; 2 for the server that
        is down, ample for Milvus Lite on a busy machine)."""
        argv = [*(["-v"] if verbose else []), "--timeout", timeout, *self.top, command, *args,
                *self.cmd]
        return runner.invoke(app, argv, env=self.env)


def assert_hidden(result, *secrets: str) -> str:  # noqa: ANN001
    """Neither stream shows any of ``secrets``; no traceback; returns both streams."""
    text = result.stdout + result.stderr
    for secret in secrets:
        assert secret not in text, f"{secret!r} printed:\n{text}"
    assert "Traceback" not in text
    assert "unexpected" not in result.stderr
    return text


@pytest.mark.parametrize("source", SOURCES)
def test_info_masks_token_password_and_stored_uris(source: str, gallery: Path,
                                                   tmp_path: Path) -> None:
    token_pw, password = _secret("tok"), _secret("pw")
    in_scheme, bare = _secret("us"), _secret("ub")  # URIs of other commands' tables
    setup = Setup(source, tmp_path, token=f"bob:{token_pw}", password=password,
                  tables={"search": {"uri": f"http://alice:{in_scheme}@{DOWN}"},
                          "delete": {"uri": f"alice:{bare}@{DOWN}"}})
    secrets = (token_pw, password, in_scheme, bare)
    r = setup.run("info", "--uri", str(gallery))
    assert r.exit_code == 0, r.output + r.stderr
    text = assert_hidden(r, *secrets)
    assert "***" in text and "gallery" in text

    r = setup.run("info", "--uri", str(gallery), "--json")
    assert r.exit_code == 0, r.output + r.stderr
    assert_hidden(r, *secrets)
    settings = {s["name"]: s["value"] for s in json.loads(r.stdout)["settings"]}
    assert settings["token"] == settings["password"] == "***"
    assert settings["search.uri"] == f"http://***@{DOWN}"
    assert settings["delete.uri"] == f"***@{DOWN}"

    r = setup.run("search", str(gallery.parent / "0000_00.jpg"), "--uri",
                  str(tmp_path / "absent.db"), verbose=True)
    assert r.exit_code == 5
    assert_hidden(r, *secrets)


@pytest.mark.parametrize("source", SOURCES)
def test_unreachable_server_uri_masked(source: str, tmp_path: Path,
                                       val_images: list[Path]) -> None:
    user_pw, token_pw = _secret("uri"), _secret("tok")
    setup = Setup(source, tmp_path, uri=f"http://alice:{user_pw}@{DOWN}",
                  token=f"bob:{token_pw}")
    for verbose in (False, True):
        r = setup.run("info", verbose=verbose, timeout="2")
        assert r.exit_code == 4, r.output + r.stderr
        assert_hidden(r, user_pw, token_pw)
        assert f"error: connect at http://***@{DOWN} failed" in r.stderr
        r = setup.run("search", str(val_images[0]), verbose=verbose, timeout="2")
        assert r.exit_code == 4, r.output + r.stderr
        assert_hidden(r, user_pw, token_pw)
    r = setup.run("doctor", timeout="2")
    assert r.exit_code == 1, r.output + r.stderr
    assert "fail" in assert_hidden(r, user_pw, token_pw)
    r = setup.run("doctor", "--json", timeout="2")
    assert_hidden(r, user_pw, token_pw)
    assert json.loads(r.stdout)["ok"] is False


@pytest.mark.parametrize("source", SOURCES)
def test_scheme_less_uri_masked(source: str, tmp_path: Path, val_images: list[Path]) -> None:
    user_pw = _secret("bare")
    setup = Setup(source, tmp_path, uri=f"alice:{user_pw}@{DOWN}")
    for command, args in (("info", ()), ("search", (str(val_images[0]),)),
                          ("ingest", (str(val_images[0]),)), ("delete", ("--person", "0000"))):
        r = setup.run(command, *args, verbose=command == "search", timeout="2")
        assert r.exit_code in (2, 4, 5), r.output + r.stderr
        assert_hidden(r, user_pw)
        assert r.stderr.strip().splitlines()[-1].startswith("error:")


def test_verbose_process_masks_secrets_in_the_log(tmp_path: Path) -> None:
    """A real ``reidctl -v`` process (the rich log handler on its real stderr), with
    every secret in the environment."""
    user_pw, token_pw, password = _secret("uri"), _secret("tok"), _secret("pw")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REIDCTL_")}
    env |= {"REIDCTL_URI": f"http://alice:{user_pw}@{DOWN}", "REIDCTL_TOKEN": token_pw,
            "REIDCTL_PASSWORD": password, "REIDCTL_USER": "alice", "COLUMNS": "60"}
    r = subprocess.run([str(REIDCTL), "-v", "--timeout", "2", "info"], env=env,
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    for secret in (user_pw, token_pw, password):
        assert secret not in r.stdout + r.stderr
    assert "DEBUG" in r.stderr  # the log was on
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: connect at http://***@{DOWN}")


def test_log_records_are_masked(tmp_path: Path, gallery: Path) -> None:
    """A warning logged by reidctl code with a secret in its arguments (the
    last-resort path when not verbose, the rich handler with -v)."""
    import logging

    token_pw = _secret("tok")
    log = logging.getLogger("reidctl.test")
    setup = Setup("option", tmp_path, token=f"bob:{token_pw}")
    for verbose in (False, True):
        original = logging.getLogger("reidctl").handlers[:]
        r = setup.run("info", "--uri", str(gallery), verbose=verbose)
        assert r.exit_code == 0, r.output + r.stderr
        handler = next(h for h in logging.getLogger("reidctl").handlers
                       if h not in original or getattr(h, "_reidctl", False))
        record = log.makeRecord("reidctl.test", logging.WARNING, __file__, 1,
                                "token %s refused", (f"bob:{token_pw}",), None)
        assert handler.filter(record)
        assert token_pw not in record.getMessage() and "***" in record.getMessage()


@pytest.mark.parametrize("command", ["info", "search", "ingest", "doctor", "bench"])
def test_help_shows_no_configured_secret(command: str, tmp_path: Path) -> None:
    """``--help`` shows defaults, and reidctl.toml fills them: not its URI or token."""
    user_pw, token_pw = _secret("uri"), _secret("tok")
    setup = Setup("config", tmp_path, uri=f"http://alice:{user_pw}@{DOWN}",
                  token=f"bob:{token_pw}")
    r = runner.invoke(app, [*setup.top, command, "--help"], env=setup.env)
    assert r.exit_code == 0, r.output + r.stderr
    assert "--uri" in r.stdout
    assert_hidden(r, user_pw, token_pw)
