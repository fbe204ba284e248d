"""Progress bars of the commands: one tqdm bar on stderr, never on stdout (so ``--json`` output
stays parseable), and only when a person is watching.

A bar is shown when the command's ``--progress`` flag is on (the default; ``--no-progress`` hides
it) and stderr is a terminal.  The environment variable ``RECOURSE_PROGRESS`` overrides the
terminal check: ``1`` (or ``on``, ``always``, ``yes``, ``true``) shows bars even when stderr is a
file or a pipe (a CI log), ``0`` (or ``off``, ``never``, ``no``, ``false``) hides them
everywhere; unset, empty or ``auto``: a terminal only.  ``--no-progress`` always wins.

The bar is fed through the library's stage callback convention
(:data:`recourse.bundle.StageProgress`): ``progress(done, total, stage)``, told before each stage
of a long job (or after each chunk of rows) and at the end; the bar takes the call's total and
count and shows the stage next to its name.  Functions that take such a ``progress`` stay silent
when it is None (their default).
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from recourse.bundle import StageProgress

ENV = "RECOURSE_PROGRESS"
"""The environment variable that forces progress bars on (``1``) or off (``0``)."""
FORCE_ON = frozenset({"1", "on", "always", "yes", "true", "force"})
FORCE_OFF = frozenset({"0", "off", "never", "no", "false"})


def progress_enabled(flag: bool = True, stream: IO[str] | None = None) -> bool:
    """Whether to show a bar on ``stream`` (default: stderr): never when ``flag`` (a command's
    ``--progress``) is off; else as ``RECOURSE_PROGRESS`` says, and without it (or ``auto``) only
    when the stream is a terminal."""
    if not flag:
        return False
    setting = os.environ.get(ENV, "").strip().lower()
    if setting in FORCE_ON:
        return True
    if setting in FORCE_OFF:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


@contextmanager
def progress_bar(enabled: bool, desc: str, unit: str = "stage") -> Iterator["StageProgress | None"]:
    """A ``progress(done, total, stage)`` callback drawing a tqdm bar named ``desc`` on stderr, or
    None when no bar is to be shown (:func:`progress_enabled` of ``enabled``); the bar is cleared
    when the block ends."""
    if not progress_enabled(enabled):
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=1, desc=desc, unit=unit, dynamic_ncols=True, leave=False, file=sys.stderr) as bar:
        def update(done: int, total: int, stage: str) -> None:
            total = max(total, 1)
            if total != bar.total or done < bar.n:  # a new phase: its own count and rate
                bar.reset(total=total)
            bar.n = min(done, total)
            bar.set_description(f"{desc}: {stage}" if stage else desc, refresh=False)
            bar.refresh()

        yield update


__all__ = ["ENV", "progress_enabled", "progress_bar"]
