"""The optional ``progress`` of the benchmarks: a callback ``progress(done, total, stage)`` (the
library's :data:`recourse.bundle.StageProgress` convention), told before each long phase of a
benchmark and once at the end.  None, the default, keeps a benchmark silent; ``recourse bench``
passes one that draws a bar on stderr (:mod:`commands.progress`).  The callback is called between
the timed engine calls, never inside one, and a benchmark's figures and keys do not depend on it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recourse.bundle import StageProgress


class Steps:
    """Counts the ``total`` steps of a benchmark for its ``progress`` callback (None: silent)."""

    def __init__(self, progress: "StageProgress | None", total: int) -> None:
        self.progress, self.total, self.done = progress, max(int(total), 0), 0

    def __call__(self, stage: str, steps: int = 1) -> None:
        """Tell that ``stage`` starts (it counts as ``steps`` steps)."""
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total, stage)
        self.done += steps

    def nested(self, prefix: str) -> "StageProgress | None":
        """A callback for a library call's own stages (e.g. :func:`recourse.bundle.build_dataset_bundle`),
        shown as ``prefix: stage`` while it runs; None when this one is silent."""
        if self.progress is None:
            return None
        progress = self.progress

        def forward(done: int, total: int, stage: str) -> None:
            progress(done, total, f"{prefix}: {stage}")

        return forward

    def finish(self) -> None:
        """Tell that the benchmark is done."""
        if self.progress is not None:
            self.progress(self.total, self.total, "done")


__all__ = ["Steps"]
