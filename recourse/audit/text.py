"""Plain-text summary of an audit for the terminal."""
from __future__ import annotations

from typing import Any


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _num(v: Any) -> str:
    return "–" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))


def format_summary(summary: dict[str, Any], out: str) -> str:
    """A few lines: coverage, cost, fairness gaps, probe, stability, exact figures and where the files are."""
    c, run = summary["coverage"], summary.get("run", {})
    lines = [f"Audited {c['applicants']:,} applicants in {run.get('seconds')} s "
             f"({_num(run.get('applicants_per_second'))} applicants/s this run; {run.get('rows_resumed', 0):,} resumed)",
             f"  denied {c['denied']:,} (approval rate {_pct(c['decision_rate'])}); recourse within {c['max_changes']} changes "
             f"for {c['recourse_found']:,} ({_pct(c['coverage'])}), none for {c['no_recourse_found']:,}",
             f"  cost: median {_num(c['cost'].get('q50'))}, 90 % {_num(c['cost'].get('q90'))}; changes "
             + ", ".join(f"{k}: {v}" for k, v in c["changes"].items())]
    for name, res in summary["fairness"].items():
        lines.append(f"  by {name} (reference {res['reference']}):")
        for g in res["groups"]:
            lines.append(f"    {g['group'][:36]:<36} n={g['applicants']:<7} approval {_pct(g['decision_rate']):>8}  "
                         f"coverage {_pct(g['coverage']):>8}  median cost {_num(g['median_cost'])}")
        sp = res["spread"]
        ci = sp["decision_rate"]["ci"] or [None, None]
        lines.append(f"    spread: approval {_pct(sp['decision_rate']['value'])} (95 % interval {_pct(ci[0])} to {_pct(ci[1])}), "
                     f"coverage {_pct(sp['coverage']['value'])}, median cost {_num(sp['median_cost']['value'])}")
    for name, d in summary["discrimination"].items():
        lines.append(f"  probe {name}: decision changes for {d['changed_decisions']:,} applicants ({_pct(d['share'])})")
    st = summary.get("stability", {})
    if st.get("sampled"):
        lines.append(f"  stability ({st['sampled']} pairs): same features {_pct(st.get('same_features_share'))}, "
                     f"median advice distance {_num(st['advice_distance'].get('q50'))} vs input {_num(st['input_distance'].get('q50'))}")
    ex = summary.get("exact")
    if ex:
        lines.append(f"  exact (MILP): {ex['solved']:,} solved, {ex['certified_no_recourse']:,} certified no recourse "
                     f"({ex['certified_none_reported_as_none']:,} reported as none), gap ≤ {int(100 * ex['tolerance'])} % for "
                     f"{_pct(ex['share_within_tolerance_of_compared'])} of {ex['compared']:,} compared, median gap {_num(ex['gap'].get('q50'))}")
    lines.append(f"  outputs: {out}/report.html, {out}/summary.json, {out}/applicants.*")
    return "\n".join(lines)
