"""The typed values of the Python API (:mod:`reidctl.api`): search hits and results, stored
image records, gallery information, and :func:`where`, which builds a search filter.

Plain data without torch or pymilvus, so that importing it stays cheap.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from reidctl.config import DEFAULT_URI, Connection
from reidctl.errors import InputError
from reidctl.types import Selection, iso_ms, utc_ms

if TYPE_CHECKING:
    from reidctl.pipeline.search import QueryResult
    from reidctl.query_opts import QueryOptions

# What a stored capture time of "unknown" is (see ImageMeta.captured_at).
UNKNOWN_TIME = -1
_IMAGE_ID = re.compile(r"[0-9a-f]{64}")


class ImageNotFound(InputError):
    """An image id that the gallery does not hold."""


def check_image_id(image_id: str) -> str:
    """``image_id`` lower-cased when it is an image id (64 hex digits), else InputError."""
    pk = image_id.lower() if isinstance(image_id, str) else ""
    if not _IMAGE_ID.fullmatch(pk):
        raise InputError(f"{str(image_id)[:80]!r} is not an image id (the 64 hex digits of "
                         "a sha256)")
    return pk


def to_datetime(ms: int | None) -> dt.datetime | None:
    """Epoch milliseconds -> an aware UTC datetime; None for an unknown time (< 0)."""
    if ms is None or ms < 0:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)


def iso(t: dt.datetime | None) -> str | None:
    """``2026-11-26T08:00:00Z`` (UTC, seconds, milliseconds when there are any), or None."""
    if t is None:
        return None
    t = t.astimezone(dt.timezone.utc)
    spec = "milliseconds" if t.microsecond else "seconds"
    return t.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def epoch_ms(value: dt.datetime | str | int | None, what: str) -> int | None:
    """A time as epoch milliseconds.

    Args:
        value: a datetime (naive: UTC), an ISO 8601 text (``2026-11-26T08:00``, UTC when
            it has no zone), epoch milliseconds, or None.
        what: the parameter's name, for the message.

    Raises:
        InputError: a text that is not ISO 8601, or another type.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputError(f"{what} must be a time, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return iso_ms(value.strip())
        except ValueError:
            raise InputError(f"{what} must be an ISO 8601 time like 2026-11-26T08:00, "
                             f"got {value!r:.80}") from None
    if not isinstance(value, dt.datetime):
        raise InputError(f"{what} must be a datetime, an ISO 8601 text or epoch milliseconds, "
                         f"got {type(value).__name__}")
    return utc_ms(value)


def as_strings(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def where(
    *, camera: str | Iterable[str] | None = None,
    exclude_camera: str | Iterable[str] | None = None,
    source: str | Iterable[str] | None = None, person: str | Iterable[str] | None = None,
    after: dt.datetime | str | int | None = None, before: dt.datetime | str | int | None = None,
) -> Selection | None:
    """A search filter (all criteria AND-ed; several values of one criterion OR-ed). The
    filter runs inside Milvus, in the coarse search.

    Args:
        camera: only these cameras; exclude_camera: not these.
        source: only these sources; person: only these person ids.
        after: captured at or after; before: captured before (a datetime, ISO 8601 text
            or epoch ms; UTC when no zone is given). Images without a capture time never
            pass a time criterion.

    Returns:
        The selection, or None when no criterion is given (the whole gallery).

    Raises:
        InputError: a blank value (an unset variable must never mean "any"), a control
            character, or a time that cannot be read.
    """
    sel = Selection(cameras=as_strings(camera), exclude_cameras=as_strings(exclude_camera),
                    sources=as_strings(source), person_ids=as_strings(person),
                    after_ms=epoch_ms(after, "after"), before_ms=epoch_ms(before, "before"))
    return None if sel.empty else sel


@dataclass(frozen=True)
class SearchHit:
    """One ranked gallery image.

    Attributes:
        rank: 1 for the nearest.
        id: the image id (sha256 of the file's bytes).
        distance: full-descriptor distance to the query (smaller is more alike).
        path: where the image was ingested from (on the machine that ingested it).
        camera, person, source: stored labels, ``""`` when unknown.
        time: capture time (UTC), None when unknown.
    """

    rank: int
    id: str
    distance: float
    path: str
    camera: str
    person: str
    time: dt.datetime | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the time as ISO 8601 text (``...Z``) or None."""
        return asdict(self) | {"time": iso(self.time)}


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds per stage of one query. ``decode`` and ``extract`` are this query's
    share of its batch (0 for a query made of stored vectors); ``fetch`` includes reading
    the shown hits' metadata and, for :meth:`~reidctl.api.Gallery.search_id`, the stored
    vectors."""

    decode: float = 0.0
    extract: float = 0.0
    coarse: float = 0.0
    fetch: float = 0.0
    rerank: float = 0.0

    @property
    def total(self) -> float:
        """The sum of the stages."""
        return self.decode + self.extract + self.coarse + self.fetch + self.rerank

    def to_dict(self) -> dict[str, float]:
        """Every stage and the total, rounded to microseconds."""
        return {k: round(v, 3) for k, v in (asdict(self) | {"total": self.total}).items()}


@dataclass(frozen=True)
class SearchResult:
    """The ranked hits of one query.

    Attributes:
        query: the query as given (a path), ``<image N>`` for pixels or bytes, or
            ``id:<image id>`` for :meth:`~reidctl.api.Gallery.search_id`.
        hits: the top-k, nearest first.
        no_match: True when the best hit lies beyond the threshold (the person is most
            likely not in the gallery), None without a threshold.
        threshold: the "no match" distance used (the model's calibrated one by default).
        best_distance: the plain C2F best distance (what the threshold is compared with).
        method: ``c2f``, ``c2f+qe``, ``c2f+kr`` or ``c2f+qe+kr``.
        ms: milliseconds per stage.
        warnings: what degraded the ranking (e.g. candidates without local descriptors).
    """

    query: str
    hits: list[SearchHit]
    no_match: bool | None
    threshold: float | None
    best_distance: float | None
    method: str
    ms: StageTimes
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImageRecord:
    """What the gallery stores about one image (besides its descriptors).

    Attributes:
        id: the image id (sha256 of the file's bytes).
        path: the file it was ingested from.
        camera, person, source: labels, ``""`` when unknown.
        time: capture time (UTC), None when unknown.
        model: fingerprint of the model that made its descriptors.
    """

    id: str
    path: str
    camera: str
    person: str
    source: str
    time: dt.datetime | None
    model: str

    @classmethod
    def from_store(cls, image_id: str, meta: dict[str, Any]) -> ImageRecord:
        """From :meth:`reidctl.store.MilvusStore.existing`'s record of one id."""
        return cls(id=image_id, path=str(meta.get("path", "")),
                   camera=str(meta.get("camera", "")), person=str(meta.get("person_id", "")),
                   source=str(meta.get("source", "")),
                   time=to_datetime(int(meta.get("captured_at", UNKNOWN_TIME))),
                   model=str(meta.get("model", "")))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the time as ISO 8601 text or None."""
        return asdict(self) | {"time": iso(self.time)}


@dataclass(frozen=True)
class GalleryInfo:
    """What :meth:`~reidctl.api.Gallery.info` reports.

    Attributes:
        uri: the store URI without credentials.
        collection: the collection-pair name.
        backend: ``milvus-lite`` or ``milvus-server``.
        images: images stored (rows of the global collection).
        local_images: rows of the local collection (equal unless a write was cut short).
        model: the loaded model (backbone, dims, fingerprint, device, ...).
        threshold: the model's calibrated "no match" distance, None without one.
        index: the global ANN index (type, metric, params).
    """

    uri: str
    collection: str
    backend: str
    images: int
    local_images: int
    model: dict[str, Any]
    threshold: float | None
    index: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def query_options(k: int, m: int, qe: int, kreciprocal: bool, k1: int = 10, k2: int = 3,
                  lam: float = 0.3) -> QueryOptions:
    """The search settings checked, and the query-time options as the search path takes
    them.

    Raises:
        InputError: ``k`` outside 1..1000, ``m`` outside 1..16384, or a bad option.
    """
    from reidctl.query_opts import QueryOptions
    from reidctl.store import MAX_TOPK

    if not 1 <= k <= 1000:
        raise InputError(f"k must be in 1..1000, got {k}")
    if not 1 <= m <= MAX_TOPK:
        raise InputError(f"m must be in 1..{MAX_TOPK}, got {m}")
    return QueryOptions(qe=qe, kreciprocal=kreciprocal, k1=k1, k2=k2, lam=lam)


def result_from(r: QueryResult, share: tuple[float, float]) -> SearchResult:
    """The search path's result of one query as a :class:`SearchResult`.

    Args:
        r: the ranked query.
        share: the query's milliseconds of decoding and of the forward pass.
    """
    times = r.captured_at or [UNKNOWN_TIME] * len(r.hits)
    hits = [SearchHit(h.rank, h.id, float(h.distance), h.path, h.camera, h.person_id,
                      to_datetime(t), h.source) for h, t in zip(r.hits, times, strict=True)]
    t = r.timings
    ms = StageTimes(decode=share[0], extract=share[1], coarse=t.coarse, fetch=t.fetch,
                    rerank=t.rerank)
    return SearchResult(r.query, hits, r.no_match, r.threshold, r.best_distance, r.method, ms,
                        list(t.warnings))


# The environment variables of Gallery.from_env (those the command line reads).
_ENV = {"collection": "REIDCTL_COLLECTION", "model": "REIDCTL_MODEL",
        "device": "REIDCTL_DEVICE"}
_CONN_ENV = {"token": "REIDCTL_TOKEN", "user": "REIDCTL_USER", "password": "REIDCTL_PASSWORD",
             "db_name": "REIDCTL_DB", "ca_file": "REIDCTL_TLS_CA",
             "server_name": "REIDCTL_TLS_SERVER_NAME", "client_cert": "REIDCTL_TLS_CERT",
             "client_key": "REIDCTL_TLS_KEY"}


def env_settings() -> tuple[Connection, dict[str, str]]:
    """The connection and the gallery settings (collection, model, device) that the
    ``REIDCTL_*`` environment variables give, as the command line reads them.

    Raises:
        InputError: ``REIDCTL_TIMEOUT`` is not a number.
    """
    env = os.environ
    kw: dict[str, Any] = {k: env[v] for k, v in _CONN_ENV.items() if env.get(v)}
    if env.get("REIDCTL_TIMEOUT"):
        try:
            kw["timeout"] = float(env["REIDCTL_TIMEOUT"])
        except ValueError:
            raise InputError("REIDCTL_TIMEOUT must be a number of seconds, got "
                             f"{env['REIDCTL_TIMEOUT']!r:.40}") from None
    kw["tls"] = env.get("REIDCTL_TLS", "").lower() in ("1", "true", "t", "yes", "y", "on")
    conn = Connection(env.get("REIDCTL_URI") or DEFAULT_URI, **kw)
    return conn, {k: env[v] for k, v in _ENV.items() if env.get(v)}
