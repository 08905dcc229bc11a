"""Progress stages: how a long pipeline function opens one progress bar per stage."""

from __future__ import annotations

from collections.abc import Callable

from reidctl.pipeline.common import ProgressFn

StageFn = Callable[[str, int], ProgressFn]
"""Called with (stage name, total steps); returns the stage's progress callback."""


def stage_opener(on_stage: StageFn | None, *, lazy: bool = False,
                 ) -> Callable[[str, int], ProgressFn | None]:
    """A function opening stages through ``on_stage`` (None: no progress at all).

    Args:
        lazy: open a stage's bar on its first step, and none for a stage of no steps, so
            that work found cached shows no bar.
    """
    def stage(name: str, total: int) -> ProgressFn | None:
        if on_stage is None or (lazy and total <= 0):
            return None
        if not lazy:
            return on_stage(name, total)
        bar: list[ProgressFn] = []

        def advance(k: int) -> None:
            if not bar:
                bar.append(on_stage(name, total))
            bar[0](k)
        return advance
    return stage
