"""Pictures of search results: ranked lists with each query's person for the frames."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reidctl.data.names import parse_name
from reidctl.viz import render_grid


def search_grid(rows: Sequence[Mapping[str, Any]], out_path: Path) -> Path:
    """Draws search results as a PNG grid, hits framed by whether they are the query's person.

    Args:
        rows: one search result per query, as ``SearchResult.to_dict()`` gives it
            (``query``, ``hits``, ``no_match``, ...).
        out_path: PNG to write.

    Returns:
        The path written. The query's person id is read from its file name (CUHK03 and
        Market-1501 conventions); when the name carries none, frames stay grey.
    """
    return render_grid([dict(r) | {"query_person": parse_name(r["query"]).person_id or None}
                        for r in rows], out_path)
