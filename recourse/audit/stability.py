r"""Stability of the advice: similar applicants should get similar recourse.

For a seeded sample of denied applicants x, a neighbour :math:`\tilde x` gets Gaussian noise on
each mutable numeric feature, :math:`\tilde x_j = x_j + \sigma s_j \xi`, :math:`\xi \sim N(0, 1)`
(:math:`s_j` the cost scale, σ = ``noise``), rounded to the feature's lattice and clipped to its
range.  Both go through the engine in one batch; for the pairs where both get a recourse y, ỹ:

* input distance  :math:`d_x = \mathrm{cost}(x, \tilde x)`,  advice distance :math:`d_y = \mathrm{cost}(y, \tilde y)`
  (the engine's cost metric :math:`\sum_j |\Delta_j|/s_j`), and the ℓ2 distance of y and ỹ on the
  scaled encoding;
* the ratio :math:`d_y / d_x` (a local Lipschitz estimate; large = unstable);
* whether the same features are changed (same action set).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .stats import _dist


def perturb(frame: pd.DataFrame, schema, noise: float, rng: np.random.Generator) -> pd.DataFrame:
    """Neighbours of the rows of ``frame``: noise on the mutable numeric features only."""
    out = frame.copy()
    for feat in schema.features:
        if feat.immutable or not feat.is_numeric:
            continue
        v = frame[feat.name].to_numpy(dtype=float) + rng.normal(0.0, noise * (feat.cost_scale or 1.0), len(frame))
        v = np.clip(v, *feat.range)
        if feat.kind == "integer":
            out[feat.name] = np.round(v).astype(np.int64)
        else:
            out[feat.name] = np.round(v, feat.precision) if feat.precision is not None else v
    return out


def stability(engine, applicants: pd.DataFrame, *, n: int, noise: float, seed: int, max_changes: int,
              density: Any = True) -> tuple[dict[str, Any], pd.DataFrame]:
    """Stability summary and per-pair table for up to ``n`` of the given denied ``applicants``."""
    rng = np.random.default_rng(seed)
    if len(applicants) == 0 or n <= 0:
        return {"sampled": 0, "noise": noise}, pd.DataFrame()
    pick = np.sort(rng.choice(len(applicants), size=min(n, len(applicants)), replace=False))
    x = engine.validate(applicants.iloc[pick][engine.schema.names].reset_index(drop=True))
    xt = perturb(x, engine.schema, noise, rng)
    k = len(x)
    answers = engine.explain(pd.concat([x, xt], ignore_index=True), max_changes=max_changes, density=density)
    status = np.array([a.status for a in answers], dtype=object)
    both = (status[:k] == "recourse_found") & (status[k:] == "recourse_found")
    enc = engine.encoder
    cf = pd.DataFrame([a.counterfactual if a.counterfactual is not None else a.applicant for a in answers],
                      columns=engine.schema.names)
    cf_x, cf_t = cf.iloc[:k].reset_index(drop=True), cf.iloc[k:].reset_index(drop=True)
    d_in = enc.change_costs(x, xt)
    d_cf = np.where(both, enc.change_costs(cf_x, cf_t), np.nan)
    l2_cf = np.where(both, np.linalg.norm(enc.encode(cf_x) - enc.encode(cf_t), axis=1), np.nan)
    feats = [";".join(sorted(a.feature for a in ans.actions)) for ans in answers]
    same = np.array([feats[i] == feats[k + i] for i in range(k)]) & both
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(both & (d_in > 0), d_cf / d_in, np.nan)
    pairs = pd.DataFrame({"row_id": applicants["row_id"].to_numpy()[pick] if "row_id" in applicants else pick,
                          "status_x": status[:k].astype(str), "status_neighbour": status[k:].astype(str),
                          "input_distance": d_in, "advice_distance": d_cf, "advice_l2": l2_cf,
                          "ratio": ratio, "same_features": same})
    summary = {
        "sampled": k, "noise": noise,
        "both_found": int(both.sum()),
        "status_agrees": float((status[:k] == status[k:]).mean()),
        "neighbour_already_approved": int((status[k:] == "already_favourable").sum()),
        "same_features_share": float(same[both].mean()) if both.any() else None,
        "input_distance": _dist(d_in), "advice_distance": _dist(d_cf), "advice_l2": _dist(l2_cf),
        "ratio": _dist(ratio),
    }
    return summary, pairs
