"""The engine's solver settings, checked when constructed (and again by every :meth:`SCFEConfig.with_`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from .errors import FieldError, OptionsError
from .schema import COST_WEIGHT_RANGE, show_value


DEFAULT_DENSITY = "gmm"
"""The plausibility term a bundle and the engine use unless told otherwise: the Gaussian mixture,
at its default weight τ (chosen by measurement against no density, on LOF and yNN, on German
credit and Wine, see docs/benchmarks.md)."""


def margin_threshold(min_probability: float, n_classes: int) -> float:
    r"""The logit margin :math:`m = z_t - \max_{k \ne t} z_k` that guarantees :math:`p_t \ge p`.

    With softmax probabilities :math:`p_t \ge 1 / (1 + (C - 1) e^{-m})`, so
    :math:`m \ge \log\frac{p}{1-p} + \log(C - 1)` suffices; for two classes it is exact
    (:math:`p_t = \sigma(m)`).  Below 1/2 (two classes) the threshold is negative: a margin of 0
    (the model picks the target) is then the stricter rule, so the threshold is never below 0.
    """
    return max(0.0, math.log(min_probability / (1.0 - min_probability)) + math.log(max(n_classes - 1, 1)))


@dataclass(frozen=True)
class SCFEConfig:
    """Solver settings (defaults documented in the README); invalid values raise :class:`OptionsError`.

    max_changes: m, the most features a counterfactual may change (a categorical counts once);
    a whole number ≥ 1 (the engine clips it to the number of features).
    density: plausibility term (a registered density name: "kde", "gmm", "knn"; or None);
    density_weight: τ ≥ 0 (None: the density's own default, see
    :func:`recourse.density.default_density_weight`).
    margin: κ ≥ 0, the logit margin the smooth search aims for (robustness to rounding).
    search_steps / initial_weight / max_weight: the loss-weight search, in rounds of one batched
    APG run each: round 1 tries the weights initial_weight · c_b · 10^(−2…2) per row b (c_b: the
    weight at which the linearised problem reaches κ), later rounds 10^3, 10^4, … (up to
    max_weight · c_b) for rows still without a verified answer.
    max_iter / tol: APG iterations per run (≥ 1) and the per-row stopping tolerance (> 0).
    diagnose: on failure, search again with every mutable feature allowed to say why.
    time_limit: wall-clock seconds for one ``explain`` call (None: no limit); when it is up the
    search stops and rows without a verified answer get ``no_recourse_found`` saying so.
    polish: cost polish after verification (recourse/polish.py): cheaper verified answers, same constraints.
    cost_weights: per-feature cost weights ω_j (schema order; None: the schema's ``cost_weight`` values).
    min_probability: the confidence every answer must reach: the model's probability of the
    target class on the counterfactual is at least this (None: the model merely picks the target
    class); checked by the gate as a margin threshold, see :func:`margin_threshold`.
    robust: verify (and steer) with the committee of the model and its stored refits
    (:mod:`recourse.committee`): every member must give the target with the confidence above.
    exact_limit: for tree models, the most combinations the exact search over the model's split
    values (:mod:`recourse.lattice`) checks per applicant the sparse search missed (0: no exact
    search); within it an answer is a cheapest one and "no recourse" is certified.
    """

    max_changes: int = 3
    density: str | None = DEFAULT_DENSITY
    density_weight: float | None = None
    margin: float = 0.2
    search_steps: int = 2
    initial_weight: float = 1.0
    max_weight: float = 1e5
    max_iter: int = 10
    tol: float = 1e-4
    diagnose: bool = True
    time_limit: float | None = None
    polish: bool = True
    cost_weights: tuple[float, ...] | None = None
    min_probability: float | None = None
    robust: bool = False
    exact_limit: int = 200_000
    exact_seconds: float = 1.0
    linear_exact: bool = True

    def __post_init__(self) -> None:
        errors: list[FieldError] = []

        def check(name: str, ok: bool, rule: str) -> None:
            if not ok:
                errors.append(FieldError(name, f"{rule}, got {show_value(getattr(self, name))}"))

        def whole(name: str) -> None:
            v = getattr(self, name)
            check(name, isinstance(v, int) and not isinstance(v, bool) and v >= 1, "must be a whole number ≥ 1")

        def number(name: str, low: float, strict: bool = False, optional: bool = False) -> None:
            v = getattr(self, name)
            if optional and v is None:
                return
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > low if strict else v >= low)
            check(name, ok, f"must be a finite number {'>' if strict else '≥'} {low:g}" + (" or None" if optional else ""))

        whole("max_changes"), whole("search_steps"), whole("max_iter")
        check("exact_limit", isinstance(self.exact_limit, int) and not isinstance(self.exact_limit, bool)
              and self.exact_limit >= 0, "must be a whole number ≥ 0")
        number("density_weight", 0.0, optional=True), number("margin", 0.0)
        number("initial_weight", 0.0, strict=True), number("max_weight", 0.0, strict=True)
        number("tol", 0.0, strict=True), number("time_limit", 0.0, strict=True, optional=True)
        number("exact_seconds", 0.0, strict=True)
        p = self.min_probability
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p < 1.0):
            errors.append(FieldError("min_probability", f"must be a number between 0 and 1 (exclusive) or None, "
                                                        f"got {show_value(p)}"))
        check("diagnose", isinstance(self.diagnose, bool), "must be true or false")
        check("polish", isinstance(self.polish, bool), "must be true or false")
        check("robust", isinstance(self.robust, bool), "must be true or false")
        check("linear_exact", isinstance(self.linear_exact, bool), "must be true or false")
        if self.density is not None:
            from .density import available_densities

            names = available_densities()
            if self.density not in names:
                errors.append(FieldError("density", f"unknown density {show_value(self.density)}; registered: "
                                                    f"{', '.join(sorted(names))} (or None for none)"))
        if self.cost_weights is not None:
            lo, hi = COST_WEIGHT_RANGE
            bad = [w for w in self.cost_weights if isinstance(w, bool) or not isinstance(w, (int, float))
                   or not math.isfinite(w) or not lo <= w <= hi]
            if bad:
                errors.append(FieldError("cost_weights", f"every weight must be a number from {lo:g} to {hi:g}, "
                                                         f"got {show_value(bad[0])}"))
        if errors:
            raise OptionsError(errors)

    def with_(self, **changes: Any) -> "SCFEConfig":
        """A copy with ``changes`` applied (checked again); unknown names are an :class:`OptionsError`."""
        known = {f.name for f in fields(self)}
        unknown = [FieldError(k, "unknown solver setting") for k in changes if k not in known]
        if unknown:
            raise OptionsError(unknown)
        return replace(self, **changes)

    def margin_threshold(self, n_classes: int) -> float:
        """The logit-margin threshold of ``min_probability`` for a model with ``n_classes`` classes (0 without one)."""
        return 0.0 if self.min_probability is None else margin_threshold(self.min_probability, n_classes)

    def tau(self) -> float:
        """τ: the density weight of the call (0 without a density; the density's default when unset)."""
        if self.density is None:
            return 0.0
        if self.density_weight is not None:
            return float(self.density_weight)
        from .density import default_density_weight

        return default_density_weight(self.density)
