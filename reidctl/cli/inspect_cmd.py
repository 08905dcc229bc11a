"""``reidctl info`` and ``reidctl doctor``: what is there, and what is wrong."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from reidctl.cli.common import (
    AppState,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    TokenOpt,
    UriOpt,
    connection,
    errors_to_exit,
    open_store,
    out,
    print_json,
)
from reidctl.config import DEFAULT_URI

_STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def _settings(ctx: typer.Context) -> list[dict[str, Any]]:
    """Each setting that applies here with its value and where it came from."""
    from reidctl.cli.settings import shown, source_of

    state = ctx.find_object(AppState)
    cfg = state.config if state is not None else None
    rows = []
    root = ctx.find_root()
    for name, value in (state.root if state is not None else {}).items():
        src = source_of(root, name, cfg)
        if src == "default" and cfg is not None and name in cfg.common and cfg.path:
            src = f"config ({cfg.path})"
        rows.append({"name": name, "value": shown(name, value), "source": src})
    for name, value in ctx.params.items():
        if name != "json_out":
            rows.append({"name": name, "value": shown(name, value),
                         "source": source_of(ctx, name, cfg)})
    if cfg is not None:
        for command, table in sorted(cfg.commands.items()):
            for name, value in table.items():
                rows.append({"name": f"{command}.{name}", "value": shown(name, value),
                             "source": f"config ({cfg.path})"})
    return rows


def _pair_row(store: Any) -> dict[str, Any]:  # noqa: ANN401
    i = store.info()
    return {"name": i.name, "global_count": i.global_count, "local_count": i.local_count,
            "global_dim": i.global_dim, "local_dim": i.local_dim,
            "model": i.model.get("fingerprint"), "backbone": i.model.get("backbone"),
            "index": i.index, "schemas": i.schemas}


def _print_info(r: dict[str, Any]) -> None:
    size = r["disk_bytes"]
    disk = f"{size / 2**20:.1f} MiB on disk" if size is not None else "disk size: n/a"
    out.print(Text.assemble((r["uri"], "bold"), f" ({r['backend']}, {disk})"))
    out.print(f"config file: {r['config_file'] or 'none'}")
    t = Table(title="collection pairs", title_justify="left")
    for c in ("name", "images", "f_g", "index", "f_l", "model"):
        t.add_column(c, overflow="fold")
    for p in r["collections"]:
        idx = p["index"]
        params = ", ".join(f"{k}={v}" for k, v in idx["params"].items())
        images = (str(p["global_count"]) if p["global_count"] == p["local_count"]
                  else f"{p['global_count']} (local {p['local_count']})")
        t.add_row(p["name"], images, f"{p['global_dim']}-D",
                  f"{idx['type']} {idx['metric']} {params}", f"{p['local_dim']}-D", p["model"])
    if not r["collections"]:
        t.add_row("(none)", "", "", "", "", "")
    out.print(t)
    s = Table(title="settings (option > environment > config file > default)",
              title_justify="left")
    for c in ("setting", "value", "from"):
        s.add_column(c)
    for row in r["settings"]:
        s.add_row(row["name"], str(row["value"]), row["source"])
    out.print(s)


def info(
    ctx: typer.Context,
    uri: UriOpt = DEFAULT_URI, token: TokenOpt = None,
    collection: Annotated[str | None, typer.Option(
        "--collection", "-c", envvar="REIDCTL_COLLECTION", show_default=False,
        help="Only this collection pair (default: every pair in the database).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the database: collection pairs, row counts, index, model, disk size, settings."""
    with errors_to_exit():
        store = open_store(uri, collection or "gallery", token, ctx, must_exist=True)
        with store:
            names = [collection] if collection else store.pair_names()
            pairs = []
            for name in names:
                with open_store(uri, name, token, ctx) as s:
                    pairs.append(_pair_row(s))
            r = {"uri": store.uri,
                 "backend": "milvus-lite" if store.is_lite else "milvus-server",
                 "disk_bytes": store.disk_bytes(), "collections": pairs}
        state = ctx.find_object(AppState)
        cfg_path = state.config.path if state is not None and state.config else None
        r |= {"config_file": str(cfg_path) if cfg_path else None,
              "settings": _settings(ctx)}
        if json_out:
            print_json(r)
        else:
            _print_info(r)


def doctor(
    ctx: typer.Context,
    uri: UriOpt = DEFAULT_URI, token: TokenOpt = None,
    collection: Annotated[str, typer.Option(
        "--collection", "-c", envvar="REIDCTL_COLLECTION",
        help="Collection pair to check against the model.")] = "gallery",
    model: ModelOpt = "osnet_x0_25", device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Check torch, the device, the model, Milvus and the collection; say what to fix."""
    with errors_to_exit():
        from reidctl.pipeline.doctor import FAIL, run_checks

        checks = run_checks(connection(uri, token, ctx), collection, model, device)
        failed = sum(c.status == FAIL for c in checks)
        if json_out:
            print_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
        else:
            for c in checks:
                out.print(Text.assemble((f"{c.status:>4}", _STATUS_STYLE[c.status]),
                                        f" {c.name}: {c.detail}"))
                if c.fix:
                    out.print(f"      fix: {c.fix}")
            out.print("all checks passed" if not failed else f"{failed} check(s) failed")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Adds ``info`` and ``doctor`` to ``app``."""
    app.command("info")(info)
    app.command("doctor")(doctor)
