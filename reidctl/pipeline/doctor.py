"""``reidctl doctor``: check the environment and say what to fix.

Each check returns a :class:`Check`; a failed check stops the ones that depend on it
(no model -> no schema comparison) but never the others.
"""

from __future__ import annotations

import platform
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reidctl.config import Connection
from reidctl.errors import CollectionNotFound, InputError, ReidctlError

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_FREE_BYTES = 1 << 30


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report.

    Attributes:
        name: what was checked.
        status: ``ok``, ``warn`` or ``fail``.
        detail: what was found.
        fix: what to do about it (empty when nothing).
    """

    name: str
    status: str
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        """Plain data for ``--json``."""
        return asdict(self)


def check_python() -> Check:
    """Python 3.10 or later."""
    v = sys.version_info
    ok = v >= (3, 10)
    return Check("python", OK if ok else FAIL, f"{platform.python_version()} ({sys.executable})",
                 "" if ok else "use Python 3.10 or later")


def check_torch(device: str) -> tuple[Check, Check]:
    """torch importable, and the requested device usable."""
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure is the finding
        fix = "pip install -e . (installs torch==2.14.1)"
        return (Check("torch", FAIL, f"cannot import torch: {e}", fix),
                Check("device", FAIL, "no torch", fix))
    cuda = torch.cuda.is_available()
    lib = Check("torch", OK, f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if device == "cuda" and not cuda:
        dev = Check("device", FAIL, "CUDA requested but no GPU is visible",
                    "use --device cpu or auto, or check the NVIDIA driver (nvidia-smi)")
    elif cuda:
        dev = Check("device", OK, f"CUDA: {torch.cuda.get_device_name(0)} (re-ranking and "
                    "extraction run there with --device auto)")
    else:
        dev = Check("device", OK, "CPU only (no GPU visible): extraction and re-ranking on CPU")
    return lib, dev


def check_model(model: str, device: str) -> tuple[Check, Any]:
    """Load the model and time one forward pass; returns the check and the extractor."""
    try:
        from reidctl.config import resolve_device
        from reidctl.model import load_model

        extractor = load_model(model, device=str(resolve_device(device)))
    except ReidctlError as e:
        return Check("model", FAIL, str(e).splitlines()[0],
                     "pass --model osnet_x0_25, googlenet, omz_0286, omz_0277 or a reidctl "
                     "checkpoint file; set REIDCTL_OSNET_WEIGHTS / REIDCTL_OMZ_DIR if the "
                     "weights live elsewhere"), None
    except Exception as e:  # noqa: BLE001
        return Check("model", FAIL, f"{type(e).__name__}: {e}", "reinstall: pip install -e ."), None
    import torch

    from reidctl.timing import Stopwatch

    h, w = extractor.spec.input_size
    batch = torch.rand(4, 3, h, w)
    extractor.extract(batch)  # warm up
    with Stopwatch() as sw:
        d = extractor.extract(batch)
    ms = sw.ms / 4
    open_set = getattr(extractor, "open_set", None)
    extra = f", no-match threshold {open_set['threshold']:.4f}" if open_set else ""
    return Check("model", OK, f"{model}: {extractor.spec.name} {h}x{w}, fingerprint "
                 f"{extractor.fingerprint}, f_g {d.global_.shape[1]}-D, f_l {d.local.shape[1]}-D, "
                 f"{ms:.1f} ms/image{extra}"), extractor


def check_store(conn: Connection, collection: str, extractor: Any) -> list[Check]:  # noqa: ANN401
    """Milvus reachable, disk space, and the collection pair against the model.

    Read-only: a Lite database that does not exist is reported, not created.
    """
    from reidctl.store import MilvusStore

    where = "Milvus Lite database" if conn.is_lite else "Milvus server"
    try:
        store = MilvusStore(conn, collection, must_exist=True)
    except CollectionNotFound:  # only raised here for a Lite path without a database
        missing = Check("milvus", WARN, f"no {where} at {conn.uri} yet (nothing was created)",
                        "reidctl ingest creates it")
        return [c for c in (missing, _disk(conn)) if c is not None]
    except ReidctlError as e:
        return [Check("milvus", FAIL, str(e).splitlines()[0], _store_fix(conn, e))]
    checks = []
    with store:
        try:
            pairs = store.pair_names()
        except ReidctlError as e:
            return [Check("milvus", FAIL, str(e).splitlines()[0], "check credentials and --db")]
        checks.append(Check("milvus", OK, f"{where} {store.uri} reachable; "
                            f"{len(pairs)} collection pair(s): {', '.join(pairs) or '-'}"))
        checks.append(_disk(conn))
        checks.append(_pair(store, extractor))
    return [c for c in checks if c is not None]


def _store_fix(conn: Connection, error: ReidctlError) -> str:
    if isinstance(error, InputError):
        return ("fix --uri (a path ending in .db in an existing folder, or a server URI "
                "such as http://127.0.0.1:19530) or --timeout")
    if conn.is_lite:
        return ("stop the other process using it, make its folder writable, or pass --uri "
                "a new .db path")
    return "start the server, check --uri, credentials and the network"


def _disk(conn: Connection) -> Check | None:
    if not conn.is_lite:
        return None
    folder = Path(conn.uri).expanduser().absolute().parent
    if not folder.is_dir():
        return None
    free = shutil.disk_usage(folder).free
    ok = free >= MIN_FREE_BYTES
    return Check("disk", OK if ok else WARN, f"{free / 2**30:.1f} GiB free in {folder}",
                 "" if ok else "free disk space: ingest stops cleanly when the disk fills")


def _pair(store: Any, extractor: Any) -> Check:  # noqa: ANN401
    name = f"collection {store.name}"
    try:
        info = store.info()
    except CollectionNotFound:
        return Check(name, WARN, "does not exist yet", "reidctl ingest creates it")
    except ReidctlError as e:
        return Check(name, FAIL, str(e).splitlines()[0],
                     "use another --collection; this one was not created by reidctl")
    fp = info.model.get("fingerprint")
    if extractor is not None and fp != extractor.fingerprint:
        return Check(name, FAIL, f"holds descriptors of model {fp}, the model given is "
                     f"{extractor.fingerprint}",
                     "pass the --model it was built with, or ingest into another --collection")
    if info.global_count != info.local_count:
        return Check(name, WARN, f"{info.global_count} global vs {info.local_count} local rows",
                     "an ingest or a delete was interrupted: rerun it to complete it, or "
                     "run reidctl repair to remove images stored in one collection only")
    return Check(name, OK, f"{info.global_count} images, f_g {info.global_dim}-D "
                 f"{info.index['type']}, f_l {info.local_dim}-D, model {fp}")


def run_checks(conn: Connection, collection: str, model: str, device: str) -> list[Check]:
    """Every check, in order."""
    checks = [check_python(), *check_torch(device)]
    extractor = None
    if checks[1].status == OK:
        model_check, extractor = check_model(model, device)
        checks.append(model_check)
    checks.extend(check_store(conn, collection, extractor))
    return checks
