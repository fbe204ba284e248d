"""Helpers shared by the benchmarks."""
from __future__ import annotations

import torch


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work on ``device`` (so wall-clock timings cover it); no-op elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def correct_test_images(vb, ad, n: int, seed: int = 0):
    """The data set's bundle split and its first ``n`` correctly classified test images and labels
    (on the adapter's device), after seeding torch with ``seed``."""
    torch.manual_seed(seed)
    split = vb.split()
    x_all = torch.as_tensor(split.x_test, device=ad.device)
    y_all = torch.as_tensor(split.y_test, device=ad.device)
    correct = (ad.predict(x_all) == y_all).nonzero().squeeze(1)[:n]
    return split, x_all[correct], y_all[correct]
