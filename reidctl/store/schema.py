"""The two collection definitions (``schemas/*.json``) and the pair's metadata record.

The JSON files are versioned data: a ``"schema"`` tag (``"reidctl.global/1"``), the
field list and the index. A vector field's ``dim`` is a placeholder
(``"model.global_dim"``) filled from the model when the collection is created.

What model and schema produced a collection is recorded as JSON in the collection
properties (key :data:`META_KEY`) and, as a copy, in the collection description:
Milvus Lite 3.2.2 drops descriptions but keeps properties; a Milvus 2.3 server
keeps both.

The files are read as package data, from ``reidctl/store/schemas``: in a source
checkout that is a symbolic link to the top-level ``schemas/`` folder (the files'
one home); an installed wheel carries copies (see ``pyproject.toml``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from pymilvus import CollectionSchema, DataType, FieldSchema

from reidctl.errors import FeatureSpaceMismatch, StoreError

SCHEMA_DIR: Traversable = files("reidctl.store") / "schemas"
ROLES = ("global", "local")
META_KEY = "reidctl.meta"
TAG_PREFIX = "reidctl."

# Only types a Milvus 2.3.5 server knows; no nullable fields or default values.
_TYPES: dict[str, DataType] = {
    "VARCHAR": DataType.VARCHAR,
    "INT64": DataType.INT64,
    "FLOAT_VECTOR": DataType.FLOAT_VECTOR,
}
_DIM_PLACEHOLDERS = ("model.global_dim", "model.local_dim")


@dataclass(frozen=True)
class FieldSpec:
    """One field of a collection definition."""

    name: str
    type: str
    max_length: int | None = None
    dim: str | int | None = None
    is_primary: bool = False
    description: str = ""


@dataclass(frozen=True)
class CollectionSpec:
    """One collection definition, as read from ``schemas/<role>.json``."""

    tag: str
    role: str
    suffix: str
    description: str
    primary_key: str
    vector_field: str
    fields: tuple[FieldSpec, ...]
    index: dict[str, Any]
    search: dict[str, Any] | None

    def field(self, name: str) -> FieldSpec:
        """The field called ``name`` (KeyError when absent)."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def scalar_fields(self) -> list[str]:
        """Names of the non-primary, non-vector fields, in schema order."""
        return [f.name for f in self.fields if f.name not in (self.primary_key, self.vector_field)]


@cache
def load_spec(role: str) -> CollectionSpec:
    """Read and validate ``schemas/<role>.json``.

    Args:
        role: ``"global"`` or ``"local"``.

    Returns:
        The parsed definition.

    Raises:
        StoreError: the file is missing or malformed.
    """
    if role not in ROLES:
        raise ValueError(f"unknown collection role {role!r}")
    path = SCHEMA_DIR / f"{role}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        spec = _parse_spec(raw)
    except FileNotFoundError:
        raise StoreError(f"collection definition {path} is missing") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"collection definition {path} is malformed: {exc}") from None
    if spec.role != role:
        raise StoreError(f"collection definition {path} declares role {spec.role!r}")
    return spec


def _parse_spec(raw: dict[str, Any]) -> CollectionSpec:
    fields = tuple(
        FieldSpec(
            name=f["name"],
            type=f["type"],
            max_length=f.get("max_length"),
            dim=f.get("dim"),
            is_primary=bool(f.get("is_primary", False)),
            description=f.get("description", ""),
        )
        for f in raw["fields"]
    )
    spec = CollectionSpec(
        tag=raw["schema"],
        role=raw["role"],
        suffix=raw["collection_suffix"],
        description=raw.get("description", ""),
        primary_key=raw["primary_key"],
        vector_field=raw["vector_field"],
        fields=fields,
        index=dict(raw["index"]),
        search=raw.get("search"),
    )
    if not spec.tag.startswith(TAG_PREFIX) or "/" not in spec.tag:
        raise ValueError(f"schema tag {spec.tag!r} is not 'reidctl.<role>/<version>'")
    for f in fields:
        if f.type not in _TYPES:
            raise ValueError(f"field {f.name!r} has unsupported type {f.type!r}")
        if f.type == "VARCHAR" and not isinstance(f.max_length, int):
            raise ValueError(f"VARCHAR field {f.name!r} needs an integer max_length")
        if f.type == "FLOAT_VECTOR" and not (isinstance(f.dim, int) or f.dim in _DIM_PLACEHOLDERS):
            raise ValueError(f"vector field {f.name!r} has dim {f.dim!r}")
    primaries = [f.name for f in fields if f.is_primary]
    if primaries != [spec.primary_key]:
        raise ValueError(f"primary key must be exactly {spec.primary_key!r}, got {primaries}")
    if spec.field(spec.vector_field).type != "FLOAT_VECTOR":
        raise ValueError(f"{spec.vector_field!r} is not a FLOAT_VECTOR field")
    if spec.index.get("field") != spec.vector_field:
        raise ValueError("the index must be on the vector field")
    return spec


def resolve_dim(spec: CollectionSpec, dims: dict[str, int]) -> int:
    """The vector dimension of ``spec`` once the placeholder is filled.

    Args:
        spec: a collection definition.
        dims: ``{"model.global_dim": Dg, "model.local_dim": Dl}``.
    """
    dim = spec.field(spec.vector_field).dim
    return dim if isinstance(dim, int) else int(dims[str(dim)])


def build_schema(spec: CollectionSpec, dims: dict[str, int], description: str) -> CollectionSchema:
    """The pymilvus schema for ``spec`` (no dynamic field, no auto id).

    Args:
        spec: a collection definition.
        dims: values for the dim placeholders (see :func:`resolve_dim`).
        description: collection description (the metadata record as JSON).
    """
    fields = []
    for f in spec.fields:
        kwargs: dict[str, Any] = {"description": f.description}
        if f.type == "VARCHAR":
            kwargs["max_length"] = f.max_length
        if f.type == "FLOAT_VECTOR":
            kwargs["dim"] = resolve_dim(spec, dims)
        if f.is_primary:
            kwargs["is_primary"] = True
            kwargs["auto_id"] = False
        fields.append(FieldSchema(f.name, _TYPES[f.type], **kwargs))
    return CollectionSchema(fields, description=description, enable_dynamic_field=False)


@dataclass(frozen=True)
class PairMeta:
    """What a collection pair records about itself (see the module docstring)."""

    global_dim: int
    local_dim: int
    model: dict[str, Any]
    tags: dict[str, str] = field(default_factory=dict)  # role -> schema tag
    created_at: int = -1

    @property
    def fingerprint(self) -> str:
        """The model fingerprint the pair was created for."""
        return str(self.model.get("fingerprint", ""))

    @property
    def space(self) -> tuple[str, int, int]:
        """What must match for vectors to be comparable: (fingerprint, Dg, Dl)."""
        return (self.fingerprint, self.global_dim, self.local_dim)

    def record(self, role: str) -> str:
        """The JSON stored on the ``role`` collection."""
        return json.dumps(
            {
                "schema": self.tags[role],
                "role": role,
                "global_dim": self.global_dim,
                "local_dim": self.local_dim,
                "model": self.model,
                "schemas": self.tags,
                "created_at": self.created_at,
            },
            sort_keys=True,
        )


def parse_record(collection: str, role: str, description: dict[str, Any]) -> PairMeta:
    """Read the metadata record of a described collection.

    Args:
        collection: the collection name (for messages).
        role: the role the collection should have.
        description: ``MilvusClient.describe_collection`` output.

    Raises:
        FeatureSpaceMismatch: the collection was not created by reidctl, or by a
            definition with another role or schema version.
    """
    text = (
        (description.get("properties") or {}).get(META_KEY) or description.get("description") or ""
    )
    try:
        rec = json.loads(text)
    except ValueError:
        rec = None
    if not isinstance(rec, dict) or not str(rec.get("schema", "")).startswith(TAG_PREFIX):
        raise FeatureSpaceMismatch(
            f"collection {collection!r} exists but was not created by reidctl; "
            "drop it or choose another collection name"
        )
    expected = load_spec(role).tag
    if rec.get("role") != role or rec["schema"] != expected:
        raise FeatureSpaceMismatch(
            f"collection {collection!r} has schema {rec['schema']!r}; "
            f"this reidctl expects {expected!r}"
        )
    try:
        meta = PairMeta(
            global_dim=int(rec["global_dim"]),
            local_dim=int(rec["local_dim"]),
            model=dict(rec["model"]),
            tags={str(k): str(v) for k, v in dict(rec.get("schemas") or {}).items()},
            created_at=int(rec.get("created_at", -1)),
        )
    except (KeyError, TypeError, ValueError):
        raise FeatureSpaceMismatch(
            f"collection {collection!r} has an unreadable reidctl record"
        ) from None
    actual = vector_dim(description, load_spec(role).vector_field)
    wanted = meta.global_dim if role == "global" else meta.local_dim
    if actual != wanted:
        raise FeatureSpaceMismatch(
            f"collection {collection!r} stores {actual}-D vectors but its record says {wanted}-D"
        )
    return meta


def vector_dim(description: dict[str, Any], name: str) -> int | None:
    """The dim of vector field ``name`` in a ``describe_collection`` output, or None."""
    for f in description.get("fields", []):
        if f.get("name") == name:
            dim = (f.get("params") or {}).get("dim")
            return int(dim) if dim is not None else None
    return None
