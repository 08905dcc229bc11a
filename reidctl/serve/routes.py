"""The endpoints: search by upload or by stored image, images and thumbnails by id,
ingest of uploads, deletes, and the probes. Handlers are plain functions, run in the
server's thread pool; the gallery serializes what must not run at once."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Query, Request, Security, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer

from reidctl import __version__
from reidctl.api import ImageNotFound, where
from reidctl.api_types import SearchHit, SearchResult, check_image_id, epoch_ms, iso
from reidctl.data.names import Labels, parse_name
from reidctl.data.query_images import QueryImageError, decode_bytes
from reidctl.serve.app import ServeState, metrics_response
from reidctl.serve.files import media_type, read_stored, save_upload, thumbnail
from reidctl.serve.guard import BodyTooLarge

ImageId = Annotated[str, PathParam(description="The image id: the 64 hex digits of the "
                                                "sha256 of its file.")]
Strings = Annotated[list[str] | None, Query()]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CACHE = {"Cache-Control": "private, max-age=31536000, immutable"}  # ids name the content


@dataclass(frozen=True)
class SearchParams:
    """The query parameters of both searches."""

    k: int
    m: int
    camera: list[str] | None
    exclude_camera: list[str] | None
    source: list[str] | None
    person: list[str] | None
    after: str | None
    before: str | None
    threshold: float | None
    qe: int
    kreciprocal: bool

    def options(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`~reidctl.api.Gallery.search`."""
        return {"m": self.m, "threshold": self.threshold, "qe": self.qe,
                "kreciprocal": self.kreciprocal,
                "filters": where(camera=self.camera, exclude_camera=self.exclude_camera,
                                 source=self.source, person=self.person, after=self.after,
                                 before=self.before)}


def search_params(
    k: Annotated[int, Query(ge=1, le=1000, description="Hits returned.")] = 10,
    m: Annotated[int, Query(ge=1, le=16384, description="Coarse candidates re-ranked.")] = 500,
    camera: Annotated[list[str] | None, Query(description="Only these cameras.")] = None,
    exclude_camera: Annotated[list[str] | None, Query(description="Not these cameras.")] = None,
    source: Annotated[list[str] | None, Query(description="Only these sources.")] = None,
    person: Annotated[list[str] | None, Query(description="Only these person ids.")] = None,
    after: Annotated[str | None, Query(description="Captured at or after (ISO 8601, UTC "
                                                   "when no zone is given).")] = None,
    before: Annotated[str | None, Query(description="Captured before (ISO 8601).")] = None,
    threshold: Annotated[float | None, Query(ge=0, description="'no match' beyond this "
                                             "distance (default: the model's).")] = None,
    qe: Annotated[int, Query(ge=0, le=100, description="Query expansion with the top N "
                             "hits (0: off).")] = 0,
    kreciprocal: Annotated[bool, Query(description="k-reciprocal re-ranking.")] = False,
) -> SearchParams:
    """Reads the search parameters (FastAPI checks their ranges)."""
    return SearchParams(k, m, camera, exclude_camera, source, person, after, before,
                        threshold, qe, kreciprocal)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def client_name(name: str | None) -> str:
    """An uploaded file's name as the client gave it, for display only: its last part,
    without control characters, at most 200 characters."""
    base = _CONTROL.sub("", (name or "").replace("\\", "/").rsplit("/", 1)[-1])
    return base[:200] or "upload"


def name_labels(name: str) -> dict[str, str | None]:
    """The person and camera that an uploaded file's name gives by a dataset's naming
    (``0017_00.jpg``: person 0017, camera A), None where it gives none (Market-1501's
    junk ``-1`` and distractor ``0000`` are no person)."""
    meta = parse_name(name)
    person = meta.person_id or None
    if meta.source == "market1501" and person in ("-1", "0000"):
        person = None
    return {"query_person": person, "query_camera": meta.camera or None}


def hit_json(h: SearchHit, base: str) -> dict[str, Any]:
    """One hit as the page shows it (no server path: the file's name and URLs)."""
    return {"rank": h.rank, "id": h.id, "distance": _finite(h.distance), "camera": h.camera,
            "person": h.person, "time": iso(h.time), "source": h.source,
            "name": Path(h.path).name, "image_url": f"{base}/api/images/{h.id}",
            "thumb_url": f"{base}/api/images/{h.id}/thumb"}


def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The bytes of one uploaded file (413 over ``limit``)."""
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise BodyTooLarge(limit, f"the uploaded image {client_name(upload.filename)!r}")
    return data


def add_api_routes(app: FastAPI, state: ServeState) -> None:
    """The ``/api`` endpoints (the token is checked before they run, by
    :class:`~reidctl.serve.guard.Guard`; declared here for the documentation)."""
    g = state.gallery
    docs_auth = [Security(HTTPBearer(auto_error=False))] if state.token else []

    def route(method: str, path: str, **kw: Any) -> Any:  # noqa: ANN401 - a decorator
        return app.api_route("/api" + path, methods=[method], dependencies=docs_auth, **kw)

    def result(r: SearchResult, request: Request, query: str) -> dict[str, Any]:
        ms = r.ms.to_dict()
        state.metrics.search(ms)
        base = request.scope.get("root_path", "")
        return {"query": query, "collection": g.collection, "model": g.model.fingerprint,
                "method": r.method, "no_match": r.no_match, "threshold": _finite(r.threshold),
                "best_distance": _finite(r.best_distance),
                "hits": [hit_json(h, base) for h in r.hits], "ms": ms,
                "warnings": list(r.warnings)}

    @route("POST", "/search", summary="Search with an uploaded image")
    def search_upload(request: Request, image: Annotated[UploadFile, File(
            description="The query image (JPEG, PNG, ...): a person crop.")],
            p: Annotated[SearchParams, Depends(search_params)]) -> dict[str, Any]:
        name, data = client_name(image.filename), read_upload(image, state.max_upload)
        try:
            r = g.search(data, p.k, **p.options())[0]
        except QueryImageError as e:  # named as the client named it
            raise QueryImageError(str(e).replace("query <image 0>", f"the upload {name!r}"),
                                  e.reason) from None
        return result(r, request, name) | name_labels(name)

    @route("GET", "/search/{image_id}", summary="Search with a stored image")
    def search_stored(request: Request, image_id: ImageId,
                      p: Annotated[SearchParams, Depends(search_params)],
                      exclude_self: Annotated[bool, Query(
                          description="Leave the image itself out.")] = False,
                      ) -> dict[str, Any]:
        r = g.search_id(image_id, p.k, exclude_self=exclude_self, **p.options())
        return result(r, request, f"id:{check_image_id(image_id)}")

    @route("GET", "/images/{image_id}", summary="The stored image file",
           response_class=Response)
    def image_file(image_id: ImageId) -> Response:
        rec, data = read_stored(g, image_id)
        return Response(data, media_type=media_type(data), headers=_CACHE)

    @route("GET", "/images/{image_id}/thumb", summary="A JPEG thumbnail of a stored image",
           response_class=Response)
    def image_thumb(image_id: ImageId) -> Response:
        pk = check_image_id(image_id)
        jpeg = state.thumbs.get(pk)
        if jpeg is None:
            jpeg = thumbnail(read_stored(g, pk)[1])
            state.thumbs.put(pk, jpeg)
        return Response(jpeg, media_type="image/jpeg", headers=_CACHE)

    @route("GET", "/images/{image_id}/info", summary="What is stored about an image")
    def image_info(image_id: ImageId) -> dict[str, Any]:
        rec = g.get(image_id).to_dict()
        return {k: v for k, v in rec.items() if k != "path"} | {"name": Path(rec["path"]).name}

    @route("POST", "/ingest", summary="Add uploaded images to the gallery")
    def ingest_upload(
        request: Request,
        images: Annotated[list[UploadFile], File(description="Image files.")],
        source: Annotated[str | None, Form(description="Source stored with each.")] = "upload",
        camera: Annotated[str | None, Form(description="Camera id of each.")] = None,
        person: Annotated[str | None, Form(description="Person id of each.")] = None,
        time: Annotated[str | None, Form(description="Capture time of each (ISO 8601).")
                        ] = None,
    ) -> dict[str, Any]:
        blank = lambda v: v if v and v.strip() else None  # noqa: E731 - an empty form field
        labels = Labels(person_id=blank(person), camera=blank(camera),
                        captured_at=epoch_ms(blank(time), "time"))
        saved: dict[Path, tuple[str, str]] = {}  # path -> (client name, id)
        rejected = []
        for upload in images:
            name, data = client_name(upload.filename), read_upload(upload, state.max_upload)
            try:
                decode_bytes(data, g.model.input_size, f"upload {name}")
            except QueryImageError as e:
                rejected.append({"name": name, "reason": e.reason})
                continue
            digest, path = save_upload(data, state.uploads)
            saved[path.resolve()] = (name, digest)
        if not saved:
            reasons = {r["reason"] for r in rejected}
            reason = reasons.pop() if len(reasons) == 1 else "unusable"
            raise QueryImageError(f"none of the {len(rejected)} upload(s) is a usable image "
                                  f"({', '.join(sorted({r['reason'] for r in rejected}))})",
                                  reason)
        report = g.ingest(list(saved), source=blank(source),
                          labels=dict.fromkeys(saved, labels)).to_dict()
        names = {str(p): n for p, (n, _) in saved.items()}
        report["skipped_examples"] = [{"name": names.get(e["path"], Path(e["path"]).name),
                                       "reason": e["reason"]} for e in report["skipped_examples"]]
        base = request.scope.get("root_path", "")
        return {"collection": g.collection, "report": report, "rejected": rejected,
                "images": [{"name": n, "id": i, "image_url": f"{base}/api/images/{i}",
                            "thumb_url": f"{base}/api/images/{i}/thumb"}
                           for n, i in saved.values()]}

    def deleted(report: Any) -> dict[str, Any]:  # noqa: ANN401 - a DeleteReport
        d = report.to_dict()
        return d | {"examples": [Path(p).name for p in d["examples"]]}

    @route("DELETE", "/images/{image_id}", summary="Delete one image")
    def delete_one(image_id: ImageId, everything: Annotated[bool, Query(
            alias="all", description="Allow it when it is the last image.")] = False,
    ) -> dict[str, Any]:
        pk = check_image_id(image_id)
        report = g.delete([pk], everything=everything)
        if not report.matched:
            raise ImageNotFound(f"image {pk} is not in collection pair {g.collection!r}")
        state.thumbs.drop(pk)
        return deleted(report)

    @route("DELETE", "/images", summary="Delete the images a selection matches (all "
           "criteria AND-ed; a blank value is refused; every image needs all=true)")
    def delete_selected(
        ids: Annotated[list[str] | None, Query(alias="id", description="Image ids.")] = None,
        camera: Strings = None, source: Strings = None, person: Strings = None,
        everything: Annotated[bool, Query(alias="all", description="Allow deleting every "
                                          "image (alone: all of them).")] = False,
        dry_run: Annotated[bool, Query(description="Only count.")] = False,
    ) -> dict[str, Any]:
        report = g.delete(ids or (), camera=camera, source=source, person=person,
                          everything=everything, dry_run=dry_run)
        return deleted(report)

    @route("GET", "/info", summary="The gallery, the model and the limits")
    def info() -> dict[str, Any]:
        i = g.info()
        keep = ("backbone", "fingerprint", "input_size", "global_dim", "local_dim", "device")
        return {"version": __version__, "collection": i.collection,
                "backend": i.backend, "images": i.images,
                "model": {k: i.model.get(k) for k in keep}, "threshold": _finite(i.threshold),
                "auth": state.token is not None,
                "limits": {"max_upload_bytes": state.max_upload,
                           "max_ingest_bytes": state.max_ingest, "k_max": 1000, "m_max": 16384}}


def add_probe_routes(app: FastAPI, state: ServeState) -> None:
    """``/healthz``, ``/readyz`` and ``/metrics``."""

    @app.get("/healthz", summary="The process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The store answers and the model is loaded")
    def readyz() -> JSONResponse:
        try:
            images = state.gallery.count()
        except Exception as e:  # noqa: BLE001 - not ready, whatever the cause
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            return JSONResponse({"status": "unavailable", "error": state.scrub(first)}, 503)
        return JSONResponse({"status": "ready", "images": images,
                             "model": state.gallery.model.fingerprint})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        return metrics_response(state)
