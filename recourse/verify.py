"""The gate every answer passes: decode onto the feature lattice, re-encode, check every rule of the
action set, and ask the deciding model.

:class:`Verification` owns *the model whose decisions count* (the classifier itself, or the real
model, e.g. a tree ensemble, when the classifier is a differentiable surrogate that only steers
the search).  A counterfactual is accepted only when its decoded values break no constraint
(:meth:`ActionSet.admissible <recourse.actionset.ActionSet.admissible>`: immutables, ranges,
directions, ``max_change``, types, at most m changed features) and the model's target-class logit
margin on them is > 0.  Nothing leaves the engine without passing :meth:`Verification.finish`.

With consequences (:mod:`recourse.consequences`) the codes of an answer are the interventions:
the rules are checked on them, and the model is asked about the structural model's
counterfactual :meth:`Verification.outcome`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import copy

import numpy as np
import torch

from .actionset import ActionSet
from .config import SCFEConfig
from .encoding import TabularEncoder
from .objective import logit_margin


@dataclass
class BatchSolution:
    """Per-row outcome of one search: verified flags, counterfactual codes (the interventions; the
    original's where none; :meth:`Verification.outcome` gives what the model saw), their encoding, costs, target-class probabilities; ``cut``: rows the time limit stopped
    before a verified answer."""

    found: np.ndarray
    codes: np.ndarray
    encoded: np.ndarray
    cost: np.ndarray
    probability: np.ndarray
    cut: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    certified: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    """Rows without an answer for which an exact search proved that none exists (:mod:`recourse.lattice`)."""
    notes: dict[int, str] = field(default_factory=dict)
    """Per row without an answer where an exact search ran but could not be exhaustive: why."""


@dataclass(frozen=True)
class Candidate:
    """One verified counterfactual of one row: codes, scaled encoding, cost, target-class probability."""

    codes: np.ndarray
    encoded: np.ndarray
    cost: float
    probability: float


class Verification:
    """Model decisions, margins and the admissibility gate on codes (see the module docstring)."""

    def __init__(self, encoder: TabularEncoder, model: Any, device: torch.device, dtype: torch.dtype,
                 cost_weights: np.ndarray):
        self.encoder = encoder
        self.model = model
        self.device = device
        self.dtype = dtype
        self.cost_weights = np.asarray(cost_weights, dtype=float)
        """The schema's per-feature cost weights ω (used when a call sets none)."""
        self.threshold = 0.0
        """The margin an answer must exceed (the confidence of a call, see :meth:`confident`)."""
        self.consequences = encoder.action_set.consequences

    def confident(self, threshold: float) -> "Verification":
        """This gate with the margins measured against ``threshold`` (:func:`recourse.config.margin_threshold`):
        every consumer's "margin > 0" then means "target-class probability ≥ the call's minimum"."""
        if threshold == self.threshold:
            return self
        other = copy.copy(self)
        other.threshold = float(threshold)
        return other

    # ------------------------------------------------------------------ the model
    def predict_proba(self, encoded: np.ndarray) -> np.ndarray:
        """Model probabilities (N, C) for scaled rows."""
        with torch.no_grad():
            t = torch.as_tensor(encoded, device=self.device, dtype=self.dtype)
            return self.model.predict_proba(t).double().cpu().numpy()

    def margin(self, encoded: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Logit margin of the target class per row minus :attr:`threshold` (> 0: the model picks the
        target class, with the call's confidence)."""
        raw = self._raw_margin(encoded, targets)
        return raw - self.threshold if self.threshold else raw

    def _raw_margin(self, encoded: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """:math:`z_t - \\max_{k \\ne t} z_k` of the deciding model."""
        with torch.no_grad():
            x = torch.as_tensor(encoded, device=self.device, dtype=self.dtype)
            committee = getattr(self.model, "target_margin", None)  # the worst member's (recourse.committee)
            if committee is not None:
                t = torch.as_tensor(targets, device=self.device, dtype=torch.long)
                return committee(x, t).double().cpu().numpy()
            single = getattr(self.model, "binary_logit", None)
            z1 = single(x) if single is not None else None
            if z1 is not None:  # logits [0, z]: margin z for class 1, −z for class 0 (exactly)
                return np.where(np.asarray(targets) == 1, 1.0, -1.0) * z1.double().cpu().numpy()
            z = self.model.logits(x).double()
            t = torch.as_tensor(targets, device=self.device, dtype=torch.long)
            return logit_margin(z, t).cpu().numpy()

    def outcome(self, originals: np.ndarray, new: np.ndarray) -> np.ndarray:
        """The counterfactual codes the model sees for interventions ``new`` on ``originals`` (codes)."""
        return self.consequences.apply(originals, new)

    def outcome_encoded(self, originals: np.ndarray, new: np.ndarray, encoded: np.ndarray) -> np.ndarray:
        """The scaled encoding of :meth:`outcome` (``encoded`` itself without consequences)."""
        if not self.consequences.active:
            return encoded
        return self.encoder.encode_codes(self.outcome(originals, new))

    # ------------------------------------------------------------------ the gate
    def admissible(self, originals: np.ndarray, new: np.ndarray, encoded: np.ndarray, targets: np.ndarray,
                   max_changes: int, actions: ActionSet | None = None) -> np.ndarray:
        """Codes ``new`` (scaled ``encoded``) that break no rule of ``actions`` (the call's action set;
        default the schema's) and whose outcome the model puts in the target class."""
        actions = self.encoder.action_set if actions is None else actions
        good = actions.admissible(originals, new, max_changes)
        rows = np.flatnonzero(good)
        if rows.size:
            seen = self.outcome_encoded(originals[rows], new[rows], encoded[rows])
            good[rows] = self.margin(seen, targets[rows]) > 0
            if self.guarded:
                unsure = np.flatnonzero(good[rows])
                if unsure.size:
                    origin = self.encoder.encode_codes(originals[rows[unsure]])
                    good[rows[unsure]] = ~self.ambiguous(seen[unsure], origin)
        return good

    @property
    def guarded(self) -> bool:
        """Whether the deciding model has midpoint splits read through an input map (see :meth:`ambiguous`)."""
        module = getattr(self.model, "module", None)
        return getattr(module, "split_midpoint", None) is not None and getattr(module, "input_map", None) is not None

    def ambiguous(self, encoded: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray:
        """Rows the deciding model cannot place for sure: a tree model read through a pipeline's
        input map whose split input moved (from ``origin``'s) onto a midpoint split
        (:meth:`TreeEnsemble.ambiguous <recourse.trees.TreeEnsemble.ambiguous>`); all False for
        any other model."""
        if not self.guarded:
            return np.zeros(len(encoded), dtype=bool)
        module = self.model.module
        as_tensor = lambda a: torch.as_tensor(a, device=self.device, dtype=torch.float64)  # noqa: E731
        with torch.no_grad():
            return module.ambiguous(as_tensor(encoded), None if origin is None else as_tensor(origin)).cpu().numpy()

    def cost(self, a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        r"""Cost :math:`\sum_j \omega_j |\Delta_j| / s_j` per row between codes ``a`` and ``b`` (ω: the schema's if None)."""
        return self.encoder.action_set.cost(a, b, self.cost_weights if weights is None else weights)

    def verify(self, z: np.ndarray, codes: np.ndarray, targets: np.ndarray, max_changes: int, x: np.ndarray,
               weights: np.ndarray | None = None,
               actions: ActionSet | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Decode scaled rows ``z`` (nearest rounding, else rounding away from the original), re-encode, check.

        ``codes``: the originals' codes, ``x`` their encoding.  Returns (valid, re-encoded decoded
        rows, cost, decoded codes); ``weights``: per-feature cost weights ω (None: the schema's).
        """
        ok = np.zeros(len(z), dtype=bool)
        enc = np.empty_like(z)
        cost = np.full(len(z), np.inf)
        out = codes.copy()
        for rounding in ("nearest", "away"):
            todo = np.flatnonzero(~ok)
            if todo.size == 0:
                break
            new = self.encoder.decode_codes(z[todo], x[todo], codes[todo], rounding=rounding, actions=actions)
            e = self.encoder.encode_codes(new)
            good = self.admissible(codes[todo], new, e, targets[todo], max_changes, actions)
            if rounding == "nearest":
                enc[todo] = e
                out[todo] = new
            rows = todo[good]
            enc[rows], out[rows] = e[good], new[good]
            cost[rows] = self.cost(codes[rows], new[good], weights)
            ok[rows] = True
        return ok, enc, cost, out

    def finish(self, x: np.ndarray, codes: np.ndarray, targets: np.ndarray, found: np.ndarray, encoded: np.ndarray,
               config: SCFEConfig, cut: np.ndarray, weights: np.ndarray | None = None,
               actions: ActionSet | None = None) -> BatchSolution:
        """Final gate: decode the kept points once more and re-verify everything that is returned."""
        n = len(x)
        if n == 0:
            return BatchSolution(found, codes.copy(), encoded, np.zeros(0), np.zeros(0), cut)
        new = self.encoder.decode_codes(encoded, x, codes, rounding="nearest", actions=actions)
        enc = self.encoder.encode_codes(new)
        final_ok = found & self.admissible(codes, new, enc, targets, config.max_changes, actions)
        new = np.where(final_ok[:, None], new, codes)
        prob = self.predict_proba(self.outcome_encoded(codes, new, enc))[np.arange(n), targets]
        cost = self.cost(codes, new, weights)
        return BatchSolution(final_ok, new, np.where(final_ok[:, None], enc, x), np.where(final_ok, cost, np.inf), prob,
                             cut & ~final_ok)
