"""Images on the batched proximal core: adapter, attacks, attack-based explainers, metrics.

NCHW batches in any value range, CPU or CUDA.  See :mod:`recourse.vision.attacks`,
:mod:`recourse.vision.explain`, :mod:`recourse.vision.metrics`, :mod:`recourse.vision.models`.
"""
from .adapter import ImageAdapter

__all__ = ["ImageAdapter"]
