r"""A committee: the bundle's model and refits of it, for answers that survive retraining.

A promise made on one model breaks when the next retraining moves the boundary.  A committee
:math:`\{f_0, f_1, \dots, f_K\}` holds the bundle's model :math:`f_0` and K refits of it (the same
recipe on bootstrap resamples with new seeds, stored in the bundle).  Its target margin is the
worst member's,

.. math::  M_t(z) = \min_k \big(Z^{(k)}_t(z) - \max_{j \ne t} Z^{(k)}_j(z)\big),

so an answer passes the gate only where every member gives the target class with the call's
confidence, and the solver (given the committee as its steering model) follows the gradient of
the member that is currently worst (a subgradient of the minimum, in the spirit of the min–max
search of ROAR, Upadhyay et al., 2021, over a finite family instead of a weight ball).  Decisions
and reported probabilities are the bundle's model's own.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from .objective import logit_margin


class Committee:
    """The bundle's model (first) and its refits; see the module docstring."""

    def __init__(self, members: Sequence[Any]):
        if len(members) < 1:
            raise ValueError("a committee needs at least one member")
        self.members = list(members)
        self.classes = list(self.members[0].classes)
        for m in self.members[1:]:
            if [str(c) for c in m.classes] != [str(c) for c in self.classes]:
                raise ValueError(f"committee members disagree on the classes: {m.classes} vs {self.classes}")

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Committee":
        for m in self.members:
            m.to(device, dtype)
        return self

    def logits(self, x: Tensor) -> Tensor:
        """The bundle's model's logits (decisions and reported probabilities are its own)."""
        return self.members[0].logits(x)

    def predict_proba(self, x: Tensor) -> Tensor:
        """The bundle's model's probabilities."""
        return self.members[0].predict_proba(x)

    def target_margin(self, x: Tensor, target: Tensor) -> Tensor:
        """(B,) the worst member's logit margin of the target class."""
        return torch.stack([logit_margin(m.logits(x), target) for m in self.members]).amin(0)
