r"""Aggregates of the per-applicant table: coverage, cost, fairness by group with bootstrap intervals.

Definitions (n = applicants, D = denied applicants, R ⊆ D = denied applicants with a verified
recourse of at most m changes):

* decision rate (approval rate) = (n − |D|) / n;  coverage = |R| / |D|;
* cost = :math:`\sum_j |\Delta_j|/s_j` of the recourse (engine units), changes = ℓ0;
* per group G (numeric grouping columns binned into bands ``[a, b)``): the same figures on G.
  Rows with no value in the grouping column (empty cell, NaN; in a binned column also text that
  is not a number) form their own group :data:`MISSING`, listed last.
* gap of a metric between group G and the reference group (the largest) = metric(G) − metric(ref);
  the spread = max − min over groups.

Bootstrap (B replicates, resampling within each group, conditional on group sizes): a proportion
k/n is redrawn as Binomial(n, k/n)/n (exactly the bootstrap distribution of a mean of 0/1 values);
a median of sorted values :math:`v_{(1)} \le \dots \le v_{(n)}` is redrawn as :math:`v_{(J)}` with
:math:`P(J \le j) = P(\mathrm{Bin}(n, j/n) \ge \lceil n/2 \rceil)` (the exact distribution of the
lower median of a bootstrap sample).  Intervals are the 2.5 and 97.5 % percentiles of the replicates;
a gap's interval comes from the difference of the two groups' independent replicates.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binom

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
MISSING = "(missing)"
"""Group label of the rows whose grouping value is missing."""


# ---------------------------------------------------------------------- bootstrap primitives
def boot_rate(k: int, n: int, b: int, rng: np.random.Generator) -> np.ndarray:
    """B bootstrap replicates of the proportion k/n."""
    if n == 0:
        return np.full(b, np.nan)
    return rng.binomial(n, k / n, b) / n


def boot_median(values: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """B bootstrap replicates of the (lower) median of ``values`` in O(n + B log n)."""
    v = np.sort(np.asarray(values, dtype=float))
    n = len(v)
    if n == 0:
        return np.full(b, np.nan)
    k = (n + 1) // 2
    cdf = binom.sf(k - 1, n, np.arange(1, n + 1) / n)
    cdf[-1] = 1.0
    return v[np.minimum(np.searchsorted(cdf, rng.random(b)), n - 1)]


def interval(draws: np.ndarray) -> list[float | None]:
    """2.5 / 97.5 % percentile interval (None when undefined)."""
    d = draws[np.isfinite(draws)]
    if d.size == 0:
        return [None, None]
    lo, hi = np.percentile(d, [2.5, 97.5])
    return [float(lo), float(hi)]


# ---------------------------------------------------------------------- grouping
def band_labels(bins: list[float]) -> list[str]:
    """Labels of the bands cut by ``bins``: '< a', '[a, b)', …, '≥ z'."""
    fmt = lambda v: f"{int(v)}" if float(v).is_integer() else f"{v:g}"  # noqa: E731
    labels = [f"< {fmt(bins[0])}"]
    labels += [f"[{fmt(a)}, {fmt(b)})" for a, b in zip(bins[:-1], bins[1:])]
    labels.append(f"≥ {fmt(bins[-1])}")
    return labels


def group_values(column: pd.Series, bins: list[float] | None) -> pd.Series:
    """Group label per row: the band for a binned numeric column, else the value as text;
    :data:`MISSING` where there is no value (or, in a binned column, no number)."""
    if bins:
        labels = np.asarray(band_labels(bins), dtype=object)
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
        out = labels[np.digitize(values, bins, right=False)]
        out[np.isnan(values)] = MISSING
        return pd.Series(out, index=column.index, dtype=object)
    text = column.astype(object).map(str)
    return text.where(column.notna(), MISSING)


def group_order(labels: np.ndarray, bins: list[float] | None) -> list[str]:
    """The groups present in ``labels``, in report order: the bands (or the sorted values), then :data:`MISSING`."""
    present = set(labels.tolist())
    order = band_labels(bins) if bins else sorted(present - {MISSING})
    return [g for g in order if g in present] + ([MISSING] if MISSING in present else [])


def _dist(values: np.ndarray) -> dict[str, Any]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"n": 0}
    q = np.quantile(values, QUANTILES)
    return {"n": int(values.size), "mean": float(values.mean()), "min": float(values.min()), "max": float(values.max()),
            **{f"q{int(p * 100)}": float(v) for p, v in zip(QUANTILES, q)}}


# ---------------------------------------------------------------------- the summary
def coverage(table: pd.DataFrame, max_changes: int) -> dict[str, Any]:
    """Overall decision rate, coverage, and the distributions of cost and of the number of changes."""
    n = len(table)
    denied = table["denied"].to_numpy(dtype=bool)
    found = (table["status"] == "recourse_found").to_numpy()
    changes = table.loc[found, "n_changes"].to_numpy()
    return {
        "applicants": n, "denied": int(denied.sum()), "approved": int(n - denied.sum()),
        "decision_rate": float((n - denied.sum()) / n) if n else None,
        "recourse_found": int(found.sum()), "no_recourse_found": int((denied & ~found).sum()),
        "coverage": float(found.sum() / denied.sum()) if denied.sum() else None,
        "max_changes": int(max_changes),
        "cost": _dist(table.loc[found, "cost"].to_numpy(dtype=float)),
        "changes": {str(k): int((changes == k).sum()) for k in range(1, max_changes + 1)},
    }


def fairness(table: pd.DataFrame, group_cols: dict[str, str], bins: dict[str, list[float]],
             b: int, rng: np.random.Generator) -> dict[str, Any]:
    """Per group-by column: per-group decision rate, coverage, median cost (with CIs) and the gaps."""
    out: dict[str, Any] = {}
    denied = table["denied"].to_numpy(dtype=bool)
    found = (table["status"] == "recourse_found").to_numpy()
    cost = table["cost"].to_numpy(dtype=float)
    exact = "exact_status" in table
    for name, col in group_cols.items():
        labels = group_values(table[col], bins.get(name)).to_numpy()
        order = group_order(labels, bins.get(name))
        groups, draws = [], {}
        for g in order:
            sel = labels == g
            n, nd, nf = int(sel.sum()), int((sel & denied).sum()), int((sel & found).sum())
            if n == 0:
                continue
            c = cost[sel & found]
            d = {"decision_rate": boot_rate(n - nd, n, b, rng), "coverage": boot_rate(nf, nd, b, rng),
                 "median_cost": boot_median(c, b, rng)}
            draws[g] = d
            row = {"group": str(g), "applicants": n, "denied": nd, "recourse_found": nf,
                   "decision_rate": (n - nd) / n, "coverage": nf / nd if nd else None,
                   "median_cost": float(np.median(c)) if c.size else None,
                   "mean_changes": float(table["n_changes"].to_numpy()[sel & found].mean()) if nf else None}
            if exact:
                row["certified_no_recourse"] = int((table["exact_status"].to_numpy()[sel] == "infeasible").sum())
            for metric in ("decision_rate", "coverage", "median_cost"):
                row[f"{metric}_ci"] = interval(d[metric])
            groups.append(row)
        if not groups:
            out[name] = {"groups": [], "reference": None, "gaps": [], "spread": {}}
            continue
        ref = max(groups, key=lambda r: r["applicants"])["group"]
        gaps = []
        for row in groups:
            if row["group"] == ref:
                continue
            gap = {"group": row["group"], "reference": ref}
            for metric in ("decision_rate", "coverage", "median_cost"):
                a, r = row[metric], next(x[metric] for x in groups if x["group"] == ref)
                gap[metric] = None if a is None or r is None else a - r
                gap[f"{metric}_ci"] = interval(draws[row["group"]][metric] - draws[ref][metric])
            gaps.append(gap)
        spread = {}
        for metric in ("decision_rate", "coverage", "median_cost"):
            vals = [r[metric] for r in groups if r[metric] is not None]
            stack = np.vstack([draws[r["group"]][metric] for r in groups])
            with np.errstate(all="ignore"):
                reps = np.nanmax(stack, axis=0) - np.nanmin(stack, axis=0) if np.isfinite(stack).any() else np.full(b, np.nan)
            spread[metric] = {"value": (max(vals) - min(vals)) if vals else None, "ci": interval(reps)}
        out[name] = {"bins": bins.get(name), "groups": groups, "reference": ref, "gaps": gaps, "spread": spread}
    return out


def top_actions(table: pd.DataFrame, group_cols: dict[str, str], bins: dict[str, list[float]], top: int = 10) -> dict[str, Any]:
    """Most frequent actions among the recourses found, overall and per group (count and share)."""
    found = table[table["status"] == "recourse_found"]

    def count(frame: pd.DataFrame) -> list[dict[str, Any]]:
        keys = frame["action_keys"].str.split(";").explode()
        keys = keys[keys.notna() & (keys != "")]
        vc = keys.value_counts().head(top)
        return [{"action": k, "count": int(v), "share": float(v / len(frame))} for k, v in vc.items()] if len(frame) else []

    per_group = {}
    for name, col in group_cols.items():
        labels = group_values(found[col], bins.get(name))
        per_group[name] = {g: count(found[labels == g]) for g in group_order(labels.to_numpy(), bins.get(name))}
    return {"overall": count(found), "by_group": per_group}


def plausibility(table: pd.DataFrame) -> dict[str, Any]:
    """Distribution of the target-class LOF of the counterfactuals (≈ 1 typical, > 1.5 outlying)."""
    lof = table.loc[table["status"] == "recourse_found", "lof"].to_numpy(dtype=float)
    lof = lof[np.isfinite(lof)]
    return {**_dist(lof), "share_above_1_5": float((lof > 1.5).mean()) if lof.size else None}


def discrimination(table: pd.DataFrame, protected: dict[str, list]) -> dict[str, Any]:
    """Applicants whose decision changes when only a protected attribute is changed."""
    out = {}
    denied = table["denied"].to_numpy(dtype=bool)
    for name, values in protected.items():
        flips = table[f"probe_{name}"].to_numpy()
        hit = flips > 0
        out[name] = {"alternatives": [v for v, _ in values], "applicants": len(table),
                     "changed_decisions": int(hit.sum()), "share": float(hit.mean()) if len(hit) else None,
                     "denied_would_be_approved": int((hit & denied).sum()),
                     "approved_would_be_denied": int((hit & ~denied).sum()),
                     "flips_total": int(flips.sum())}
    return out


def exact_gap(table: pd.DataFrame, tolerance: float = 0.05) -> dict[str, Any] | None:
    """Certified no-recourse counts and the optimality gap (cost_apg − cost_exact) / cost_exact."""
    if "exact_status" not in table:
        return None
    st = table["exact_status"].to_numpy().astype(str)
    solved = st != ""
    apg_found = (table["status"] == "recourse_found").to_numpy()
    opt, none = st == "optimal", st == "infeasible"
    both = opt & apg_found
    gap = (table["cost"].to_numpy(dtype=float)[both] - table["exact_cost"].to_numpy(dtype=float)[both]) \
        / np.maximum(table["exact_cost"].to_numpy(dtype=float)[both], 1e-12)
    return {
        "solved": int(solved.sum()), "optimal": int(opt.sum()), "certified_no_recourse": int(none.sum()),
        "errors": int((st == "error").sum()),
        "certified_none_reported_as_none": int((none & ~apg_found).sum()),
        "contradictions": int((none & apg_found).sum()),
        "apg_missed": int((opt & ~apg_found).sum()),
        "compared": int(both.sum()), "tolerance": tolerance,
        "within_tolerance": int((gap <= tolerance + 1e-9).sum()),
        "share_within_tolerance_of_compared": float((gap <= tolerance + 1e-9).mean()) if both.any() else None,
        "share_within_tolerance_of_optimal": float((gap <= tolerance + 1e-9).sum() / opt.sum()) if opt.any() else None,
        "gap": _dist(gap), "exact_cost": _dist(table["exact_cost"].to_numpy(dtype=float)[opt]),
    }


def summarize(table: pd.DataFrame, *, group_cols: dict[str, str], bins: dict[str, list[float]],
              protected: dict[str, list], max_changes: int, bootstrap: int, seed: int) -> dict[str, Any]:
    """Every aggregate of the report (stability is added by the caller)."""
    rng = np.random.default_rng(seed)
    return {
        "coverage": coverage(table, max_changes),
        "fairness": fairness(table, group_cols, bins, bootstrap, rng),
        "actions": top_actions(table, group_cols, bins),
        "plausibility": plausibility(table),
        "discrimination": discrimination(table, protected),
        "exact": exact_gap(table),
    }
