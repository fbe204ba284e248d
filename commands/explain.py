"""What ``recourse explain`` does with a large batch: the applicants go to the engine in chunks
(:data:`CHUNK_ROWS` per :meth:`~recourse.scfe.RecourseEngine.explain` call) so that a progress bar
can count them; cli.py reads the file, handles invalid rows and prints.

The answers are those of one call on the whole batch, in order: the engine answers each row on
its own, without randomness (a solver time limit, when a bundle sets one, applies to each chunk).
Every row is validated before the first chunk is solved, so that an invalid row is reported with
its place in the whole batch, as one call would.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recourse.bundle import StageProgress
    from recourse.options import RequestOptions
    from recourse.results import Recourse
    from recourse.scfe import RecourseEngine

CHUNK_ROWS = 256
"""Applicants per engine call in a batch (a bar over the rows is shown when there are more)."""


def is_chunked(payload: Any, chunk_rows: int = CHUNK_ROWS) -> bool:
    """Whether ``payload`` (an applicant object or a list of them) is solved in more than one call."""
    return isinstance(payload, list) and len(payload) > chunk_rows


def explain_rows(engine: "RecourseEngine", payload: Any, options: "RequestOptions", *,
                 progress: "StageProgress | None" = None, chunk_rows: int = CHUNK_ROWS) -> list["Recourse"]:
    """``engine.explain(payload, options=options)``, for a list longer than ``chunk_rows`` in chunks
    of that many rows (``progress(done, total, stage)`` told before each chunk and at the end).

    Raises what the one call raises: RecordValidationError naming the row in ``payload``
    (``"3.age"``) when any row is invalid, OptionsError for options that cannot be used.
    """
    if not isinstance(payload, list) or not payload:
        return engine.explain(payload, options=options)
    if is_chunked(payload, chunk_rows):
        engine.validated(payload)  # all rows first: errors name the row in the whole batch
    total = len(payload)
    results: list[Recourse] = []
    for start in range(0, total, chunk_rows):
        if progress is not None:
            progress(start, total, "explaining")
        results += engine.explain(payload[start:start + chunk_rows], options=options)
    if progress is not None:
        progress(total, total, "done")
    return results


__all__ = ["CHUNK_ROWS", "explain_rows", "is_chunked"]
