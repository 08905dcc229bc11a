"""Where each setting comes from: a command-line option, a ``REIDCTL_*`` environment
variable, a ``reidctl.toml`` file, or the built-in default, in that precedence.

``reidctl.toml`` (``--config PATH`` / ``REIDCTL_CONFIG``, else ``./reidctl.toml`` when
it exists) holds top-level keys, which apply to every command that has the option
(and to the top-level connection options), and one table per command::

    uri = "http://127.0.0.1:19530"
    collection = "gallery"
    model = "runs/omz_0286_cuhk03.pt"

    [search]
    top-k = 20

Keys are option names without the dashes (``top-k`` or ``top_k``). An unknown key is
an error, so a typo cannot be silently ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from reidctl.cli.masking import SECRET_KEYS, mask
from reidctl.errors import InputError

CONFIG_ENV = "REIDCTL_CONFIG"
DEFAULT_CONFIG = "reidctl.toml"


@dataclass(frozen=True)
class ConfigFile:
    """A parsed ``reidctl.toml``.

    Attributes:
        path: the file, or None when there is none.
        common: top-level keys (normalised to parameter names where known).
        commands: ``{command: {parameter: value}}``.
    """

    path: Path | None = None
    common: dict[str, Any] = field(default_factory=dict)
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)


def find_config(explicit: Path | None) -> tuple[Path | None, bool]:
    """The config file to read and whether the user named it (then it must exist)."""
    if explicit is not None:
        return explicit, True
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env), True
    default = Path(DEFAULT_CONFIG)
    return (default, False) if default.is_file() else (None, False)


def _aliases(command: Any) -> dict[str, str]:  # noqa: ANN401 - a click command
    """``{key: parameter name}`` for a command's options: its name and long flags."""
    out: dict[str, str] = {}
    for p in command.params:
        if (getattr(p, "param_type_name", "") != "option" or p.name is None
                or not getattr(p, "expose_value", True)):  # --version: not a setting
            continue
        out[p.name] = p.name
        for opt in (*p.opts, *p.secondary_opts):
            if opt.startswith("--"):
                out[opt[2:].replace("-", "_")] = p.name
    return out


def _norm(key: str) -> str:
    return key.strip().replace("-", "_")


def load_config(path: Path | None, group: Any) -> ConfigFile:  # noqa: ANN401 - click group
    """Parse and check a ``reidctl.toml`` against the commands of ``group``.

    Raises:
        InputError: unreadable file, TOML syntax error, unknown command table or key.
    """
    if path is None:
        return ConfigFile()
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"config file does not exist: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read config file {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"config file {path} is not valid TOML: {e}") from None
    commands = getattr(group, "commands", {})
    known = _aliases(group)
    for cmd in commands.values():
        known.update(_aliases(cmd))
    common: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in commands:
                raise InputError(f"config file {path}: [{key}] is not a reidctl command "
                                 f"(commands: {', '.join(sorted(commands))})")
            aliases = _aliases(commands[key])
            table = {}
            for k, v in value.items():
                if _norm(k) not in aliases:
                    raise InputError(f"config file {path}: reidctl {key} has no option {k!r}")
                table[aliases[_norm(k)]] = v
            sections[key] = table
        else:
            if _norm(key) not in known:
                raise InputError(f"config file {path}: no reidctl command has an option {key!r}")
            common[known[_norm(key)]] = value
    return ConfigFile(path=path, common=common, commands=sections)


# Options a top-level key does not set for a command, only its own table: eval ingests
# into and scores against its own pair, never the gallery the top-level key names.
TABLE_ONLY = {"eval": frozenset({"collection"})}


def default_map(cfg: ConfigFile, group: Any) -> dict[str, dict[str, Any]]:  # noqa: ANN401
    """Click's ``default_map`` for the subcommands: common keys where the command has
    that option (except :data:`TABLE_ONLY`), overridden by the command's own table."""
    out: dict[str, dict[str, Any]] = {}
    for name, cmd in getattr(group, "commands", {}).items():
        names = set(_aliases(cmd).values()) - TABLE_ONLY.get(name, frozenset())
        m = {k: v for k, v in cfg.common.items() if k in names}
        m.update(cfg.commands.get(name, {}))
        if m:
            out[name] = m
    return out


def source_of(ctx: typer.Context, name: str, config: ConfigFile | None = None) -> str:
    """Where the value of parameter ``name`` in ``ctx`` came from, in words."""
    src = ctx.get_parameter_source(name)
    kind = src.name if src is not None else "DEFAULT"
    if kind == "COMMANDLINE":
        return "option"
    if kind == "ENVIRONMENT":
        param = next((p for p in ctx.command.params if p.name == name), None)
        env = getattr(param, "envvar", None)
        return f"environment ({env})" if env else "environment"
    if kind == "DEFAULT_MAP" and config is not None and config.path is not None:
        return f"config ({config.path})"
    return "default"


def shown(name: str, value: Any) -> Any:  # noqa: ANN401
    """The value as it may be printed: secrets masked (a password or token whole, the
    user info of a URI)."""
    if name in SECRET_KEYS and value:
        return "***"
    return mask(str(value)) if isinstance(value, (str, Path)) else value


def _envvar(param: Any) -> str | None:  # noqa: ANN401 - a click parameter
    env = getattr(param, "envvar", None)
    if isinstance(env, (list, tuple)):
        env = env[0] if env else None
    return env or None


def shared_settings(group: Any, skip: set[str],  # noqa: ANN401 - a click group
                    config: ConfigFile | None = None) -> list[tuple[str, Any, str]]:
    """The settings that several commands of ``group`` read from a ``REIDCTL_*`` variable
    (``model``, ``device``), other than ``skip``: what those commands get when no option
    is given, and where it comes from.

    Returns:
        ``(name, value, source)`` per setting; the value is the environment variable's,
        else the config file's top-level key, else the commands' default (``"differs by
        command"`` when they do not share one).
    """
    found: dict[str, tuple[str, list[Any]]] = {}
    for cmd in getattr(group, "commands", {}).values():
        for p in cmd.params:
            env = _envvar(p)
            if env and p.name and p.name not in skip:
                found.setdefault(p.name, (env, []))[1].append(p.default)
    rows = []
    for name, (env, defaults) in found.items():
        if len(defaults) < 2:
            continue  # one command's own option: its --help says it
        if os.environ.get(env):  # click reads an empty variable as unset
            rows.append((name, os.environ[env], f"environment ({env})"))
        elif config is not None and config.path is not None and name in config.common:
            rows.append((name, config.common[name], f"config ({config.path})"))
        else:
            same = len({repr(d) for d in defaults}) == 1
            rows.append((name, defaults[0] if same else "differs by command", "default"))
    return rows
