"""``reidctl info`` and ``reidctl doctor``: what is there, and what is wrong."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from reidctl.cli import render
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
    print_json,
)
from reidctl.config import DEFAULT_URI

if TYPE_CHECKING:
    from reidctl.pipeline.results import SettingInfo


def _settings(ctx: typer.Context) -> list[SettingInfo]:
    """Each setting that applies here with its value and where it came from."""
    from reidctl.cli.settings import shared_settings, shown, source_of
    from reidctl.pipeline.results import SettingInfo

    state = ctx.find_object(AppState)
    cfg = state.config if state is not None else None
    rows = []
    root = ctx.find_root()
    for name, value in (state.root if state is not None else {}).items():
        src = source_of(root, name, cfg)
        if src == "default" and cfg is not None and name in cfg.common and cfg.path:
            src = f"config ({cfg.path})"
        rows.append(SettingInfo(name, shown(name, value), src))
    for name, value in ctx.params.items():
        if name != "json_out":
            rows.append(SettingInfo(name, shown(name, value), source_of(ctx, name, cfg)))
    # what the other commands read when no option is given (model, device)
    listed = {row.name for row in rows} | {"json_out", "quiet"}
    for name, value, src in shared_settings(root.command, listed, cfg):
        rows.append(SettingInfo(name, shown(name, value), src))
    if cfg is not None:
        for command, table in sorted(cfg.commands.items()):
            for name, value in table.items():
                rows.append(SettingInfo(f"{command}.{name}", shown(name, value),
                                        f"config ({cfg.path})"))
    return rows


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
        from reidctl.pipeline.results import InfoReport, PairInfo

        state = ctx.find_object(AppState)
        cfg_path = state.config.path if state is not None and state.config else None
        store = open_store(uri, collection or "gallery", token, ctx, must_exist=True)
        with store:
            names = [collection] if collection else store.pair_names()
            pairs = []
            for name in names:
                with open_store(uri, name, token, ctx) as s:
                    pairs.append(PairInfo.from_store(s.info()))
            r = InfoReport(uri=store.uri,
                           backend="milvus-lite" if store.is_lite else "milvus-server",
                           disk_bytes=store.disk_bytes(), collections=pairs,
                           config_file=str(cfg_path) if cfg_path else None,
                           settings=_settings(ctx))
        if json_out:
            print_json(r.to_dict())
        else:
            render.info_tables(r)


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
            render.doctor_checks(checks)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Adds ``info`` and ``doctor`` to ``app``."""
    app.command("info")(info)
    app.command("doctor")(doctor)
