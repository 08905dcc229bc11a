"""Request counts and latency histograms in the Prometheus text format (version 0.0.4).

A few counters and histograms, written out directly: the format is a handful of lines,
and a client library would add a dependency (and a process-wide registry) for them.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds; a warm C2F search is ~10-200 ms on a CPU, a cold or loaded one seconds
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGES = ("decode", "extract", "coarse", "fetch", "rerank", "total")
_PREFIX = "reidctl_"


def _label_value(value: str) -> str:
    """A label value escaped as the text format requires (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_label_value(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _number(x: float) -> str:
    return repr(float(x))


class Histogram:
    """Observations of one labelled series: cumulative bucket counts, sum and count."""

    def __init__(self, buckets: Sequence[float] = BUCKETS) -> None:
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Adds one observation (seconds)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: tuple[tuple[str, str], ...]) -> list[str]:
        """The ``_bucket`` (cumulative, ``le`` ending in ``+Inf``), ``_sum`` and ``_count``
        lines."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            le = "+Inf" if bound == float("inf") else _number(bound)
            out.append(f"{name}_bucket{_labels((*labels, ('le', le)))} {running}")
        out.append(f"{name}_sum{_labels(labels)} {_number(self.sum)}")
        out.append(f"{name}_count{_labels(labels)} {self.count}")
        return out


class Metrics:
    """What ``/metrics`` shows: requests per endpoint, method and status; request latency
    per endpoint; search latency per stage (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[str, Histogram] = {}
        self._stages: dict[str, Histogram] = {stage: Histogram() for stage in STAGES}
        self._searches = 0

    def request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Counts one answered request (``endpoint`` is the route's template, e.g.
        ``/api/images/{image_id}``, so that ids do not multiply the series)."""
        with self._lock:
            key = (endpoint, method, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            self._latency.setdefault(endpoint, Histogram()).observe(seconds)

    def search(self, ms: dict[str, float]) -> None:
        """Adds one query's stage times (milliseconds by stage name, ``total`` included)."""
        with self._lock:
            self._searches += 1
            for stage in STAGES:
                if stage in ms:
                    self._stages[stage].observe(ms[stage] / 1000.0)

    def render(self) -> str:
        """The exposition text."""
        with self._lock:
            lines = [f"# HELP {_PREFIX}http_requests_total HTTP requests answered, by "
                     "endpoint, method and status.",
                     f"# TYPE {_PREFIX}http_requests_total counter"]
            for (endpoint, method, status), n in sorted(self._requests.items()):
                labels = (("endpoint", endpoint), ("method", method), ("status", status))
                lines.append(f"{_PREFIX}http_requests_total{_labels(labels)} {n}")
            name = f"{_PREFIX}http_request_duration_seconds"
            lines += [f"# HELP {name} Time to answer a request, by endpoint.",
                      f"# TYPE {name} histogram"]
            for endpoint, hist in sorted(self._latency.items()):
                lines += hist.lines(name, (("endpoint", endpoint),))
            name = f"{_PREFIX}search_stage_seconds"
            lines += [f"# HELP {name} Time per search query and stage (decode, extract, "
                      "coarse, fetch, rerank, total).", f"# TYPE {name} histogram"]
            for stage in STAGES:
                lines += self._stages[stage].lines(name, (("stage", stage),))
            lines += [f"# HELP {_PREFIX}search_queries_total Queries searched.",
                      f"# TYPE {_PREFIX}search_queries_total counter",
                      f"{_PREFIX}search_queries_total {self._searches}"]
        return "\n".join(lines) + "\n"
