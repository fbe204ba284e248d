"""Bodies of the ``recourse`` commands: everything a command does besides parsing (cli.py) and
the library calls themselves.  Only the CLI imports this package; it may name flags.

* :mod:`.flags` — library parameter names → flags (:func:`~commands.flags.cli_message`);
* :mod:`.train`, :mod:`.audit`, :mod:`.serve`, :mod:`.log`, :mod:`.vision` — the commands of those names
  (``vision``: ``attack`` and ``explain-image``); :mod:`.explain` — ``explain`` on a large batch (in chunks);
* :mod:`.progress` — the progress bars of the commands (stderr, a terminal only unless ``RECOURSE_PROGRESS=1``).
"""
from __future__ import annotations


class CommandError(ValueError):
    """Bad input for a command; the message names the flag (or a library parameter in
    backticks, which :func:`commands.flags.cli_message` turns into its flag)."""


__all__ = ["CommandError"]
