"""The page's files, without a browser: everything it loads is its own (it works offline),
and every file it names is there."""

from __future__ import annotations

import re

from reidctl.serve.app import STATIC

TEXT = (".html", ".css", ".js")


def test_the_page_loads_nothing_from_elsewhere() -> None:
    files = [p for p in STATIC.iterdir() if p.suffix in TEXT]
    assert {p.name for p in files} >= {"index.html", "app.js", "api.js", "view.js", "app.css"}
    for p in files:
        text = p.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), p.name
        assert "@import" not in text and "url(http" not in text, p.name
    html = (STATIC / "index.html").read_text()
    assert "default-src 'self'" in html  # the browser itself refuses anything external


def test_every_file_the_page_names_is_there() -> None:
    named = set()
    for p in STATIC.iterdir():
        if p.suffix in TEXT:
            named |= set(re.findall(r'(?:src|href)="([\w.-]+\.(?:js|css))"', p.read_text()))
            named |= set(re.findall(r'from "\./([\w.-]+\.js)"', p.read_text()))
    assert named >= {"app.js", "app.css", "api.js", "view.js"}
    for name in named:
        assert (STATIC / name).is_file(), name
