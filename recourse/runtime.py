"""Runtime settings for torch on the CPU.

Small batched problems (a few hundred rows of a few dozen columns) are dominated by per-op
overhead; torch's intra-op thread pool then costs far more than it gives (measured on 2 cores:
a 100×13 linear layer takes ~18 µs on one thread and ~300 µs on two under load).  The solver
therefore runs small CPU batches on one thread and restores the previous setting afterwards.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

SMALL_BATCH_ELEMENTS = 200_000


@contextmanager
def threads_for(device: torch.device, elements: int) -> Iterator[None]:
    """Use one intra-op thread for small CPU work (``elements`` = rows × columns), else leave as is."""
    if device.type != "cpu" or elements > SMALL_BATCH_ELEMENTS:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
