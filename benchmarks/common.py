"""Helpers shared by the benchmarks."""
from __future__ import annotations

import torch


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work on ``device`` (so wall-clock timings cover it); no-op elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
