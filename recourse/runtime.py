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


def parse_device(text: str | torch.device | None) -> torch.device:
    """A torch device from user input (``None`` → cpu), refused with a clear message when the
    name is not a device or names an accelerator this machine does not have."""
    if text is None or text == "":
        return torch.device("cpu")
    if isinstance(text, torch.device):
        dev = text
    else:
        try:
            dev = torch.device(str(text).strip())
        except (RuntimeError, ValueError):
            raise ValueError(f"device: {str(text)!r} is not a torch device (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {str(text)!r} asked for, but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device: {str(text)!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device: {str(text)!r} asked for, but MPS is not available on this machine")
    return dev
