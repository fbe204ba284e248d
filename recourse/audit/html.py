"""The single-file HTML report: every figure a PNG embedded as a data URI (no network needed to view)."""
from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
import pandas as pd

SECTIONS = ("findings", "overview", "coverage", "fairness", "actions", "plausibility", "stability", "discrimination", "exact")

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:.5em 0}
.note{color:#555;font-size:.92em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}"""


DEFINITIONS = """<p class=note><b>Definitions.</b> A recourse is a counterfactual verified with the model itself on its final
values, changing at most m features (a categorical counts once) within each feature's range, allowed direction and
maximum change, immutable features untouched. <i>Coverage</i>: share of denied applicants with a recourse.
<i>Cost</i>: &Sigma;<sub>j</sub> |&Delta;<sub>j</sub>| / s<sub>j</sub> (raw change over the feature's cost scale;
a category switch costs 1/s<sub>j</sub>, ordinals by level). <i>LOF</i>: local outlier factor of the counterfactual
among approved training applicants (&asymp; 1 typical). Intervals: 95 % bootstrap, resampling within groups.</p>"""


def action_words(key: str, labels: dict[str, str]) -> str:
    """An action key ('status → 200 DM or more', 'decrease credit_amount', 'telephone on') with the
    feature's label from the schema ('checking account balance → 200 DM or more')."""
    for verb in ("increase ", "decrease "):
        if key.startswith(verb):
            name = key[len(verb):]
            return verb + labels.get(name, name)
    name, sep, rest = key.partition(" → ")
    if sep:
        return labels.get(name, name) + sep + rest
    name, sep, rest = key.rpartition(" ")
    return labels.get(name, name) + sep + rest if sep else labels.get(key, key)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig, alt: str) -> str:
    return f'<img src="{_png(fig)}" alt="{html.escape(alt)}">'


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if pct:
        return f"{100 * v:.1f} %"
    if isinstance(v, float):
        return f"{v:.3g}"
    return html.escape(str(v))


def _ci(ci: list | None, pct: bool = False) -> str:
    if not ci or ci[0] is None:
        return ""
    return f" <span class=note>[{_fmt(ci[0], pct)}, {_fmt(ci[1], pct)}]</span>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fig(w: float = 6.5, h: float = 3.0):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def _varies(values: list) -> bool:
    """Whether a chart of these values would show anything (not every bar the same)."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return len(finite) > 1 and max(finite) - min(finite) > 1e-9


def _wrap(label: str, width: int = 16) -> str:
    """A bar label on up to three lines instead of cut off."""
    import textwrap

    return "\n".join(textwrap.wrap(str(label), width)[:3]) or str(label)


def _significant(value: Any, ci: list | None) -> bool:
    return value is not None and bool(ci) and ci[0] is not None and (ci[0] > 0 or ci[1] < 0)


def findings(summary: dict[str, Any], labels: dict[str, str] | None = None) -> list[str]:
    """The report's headline in plain words (HTML): coverage, the largest burden gaps whose 95 %
    interval excludes 0, the discrimination probe, plausibility and the stability of the advice."""
    labels = labels or {}
    cov = summary["coverage"]
    out = [f"<b>{_fmt(cov['coverage'], True)}</b> of the {_fmt(cov['denied'])} denied applicants "
           f"({_fmt(cov['recourse_found'])}) have a verified recourse with at most {cov['max_changes']} changes; "
           f"{_fmt(cov['no_recourse_found'])} have none within the constraints."]
    gaps = []
    for name, res in summary.get("fairness", {}).items():
        for g in res.get("gaps", []):
            for metric, words, pct in (("coverage", "coverage", True), ("decision_rate", "approval rate", True),
                                       ("median_cost", "median cost of recourse", False)):
                if _significant(g.get(metric), g.get(f"{metric}_ci")):
                    size = abs(g[metric]) * (100 if pct else 1)
                    gaps.append((size if pct else size * 10, name, g, metric, words, pct))
    gaps.sort(key=lambda t: -t[0])
    if gaps:
        for _, name, g, metric, words, pct in gaps[:3]:
            feature = labels.get(name, name)
            sign = "higher" if g[metric] > 0 else "lower"
            amount = _fmt(abs(g[metric]), pct).replace(" %", " points") if pct else _fmt(abs(g[metric]))
            out.append(f"By {html.escape(feature)}: the {words} of '{html.escape(str(g['group']))}' is {amount} {sign} "
                       f"than that of '{html.escape(str(g['reference']))}'{_ci(g[f'{metric}_ci'], pct)}.")
    elif summary.get("fairness"):
        out.append("No gap between groups in approval rate, coverage or median cost is significant at 95 %.")
    for name, d in summary.get("discrimination", {}).items():
        if d.get("share") is None:
            continue
        feature = labels.get(name, name)
        if d["changed_decisions"]:
            out.append(f"<b>Changing {html.escape(feature)} alone flips {_fmt(d['share'], True)} of the decisions</b> "
                       f"({_fmt(d['denied_would_be_approved'])} denied would be approved, "
                       f"{_fmt(d['approved_would_be_denied'])} approved would be denied): the model uses it directly.")
        else:
            out.append(f"Changing {html.escape(feature)} alone flips no decision.")
    pl = summary.get("plausibility", {})
    if pl.get("q50") is not None:
        out.append(f"Plausibility: the median counterfactual has LOF {_fmt(pl['q50'])} among approved applicants "
                   f"(≈ 1 typical); {_fmt(pl.get('share_above_1_5'), True)} are outliers (LOF > 1.5).")
    st = summary.get("stability", {})
    if st.get("same_features_share") is not None:
        out.append(f"Stability: for {_fmt(1 - st['same_features_share'], True)} of the sampled applicants a close "
                   "neighbour is told to change other features (fragile advice).")
    return out


def render(summary: dict[str, Any], table: pd.DataFrame, pairs: pd.DataFrame, group_cols: dict[str, str],
           bins: dict[str, list[float]], title: str = "Recourse audit", labels: dict[str, str] | None = None) -> str:
    """The report as one HTML string: the findings first, then the sections overview, coverage,
    fairness, actions, plausibility, stability, discrimination, exact.  ``labels``: feature name →
    the schema's label (used for groups, attributes and actions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or {}
    cov = summary["coverage"]
    found = table["status"] == "recourse_found"
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts.append('<section id="findings"><h2>Findings</h2><ul>'
                 + "".join(f"<li>{line}</li>" for line in findings(summary, labels)) + "</ul></section>")
    meta = summary.get("run", {})
    parts.append('<section id="overview"><h2>Overview</h2>' + _table(["", ""], [
        ["population", _fmt(meta.get("population"))], ["bundle", _fmt(meta.get("bundle"))],
        ["model", _fmt(meta.get("model"))], ["favourable decision", _fmt(meta.get("favourable"))],
        ["applicants", _fmt(cov["applicants"])],
        ["denied", _fmt(cov["denied"])], ["approval rate", _fmt(cov["decision_rate"], True)],
        ["at most m changes", _fmt(cov["max_changes"])], ["density", _fmt(meta.get("density"))],
        ["wall time (s)", _fmt(meta.get("seconds"))], ["applicants / s", _fmt(meta.get("applicants_per_second"))],
    ]) + DEFINITIONS + "</section>")

    # coverage
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3))
    costs = table.loc[found, "cost"].to_numpy(dtype=float)
    a1.hist(costs[np.isfinite(costs)], bins=30, color="#3b7dd8")
    a1.set_title("cost of the recourse"), a1.set_xlabel("cost (Σ|Δ|/s)")
    ks = [int(k) for k in cov["changes"]]
    a2.bar(ks, [cov["changes"][str(k)] for k in ks], color="#3b7dd8")
    a2.set_title("number of changes"), a2.set_xticks(ks)
    cd = cov["cost"]
    parts.append('<section id="coverage"><h2>Coverage</h2>'
                 f"<p>{_fmt(cov['recourse_found'])} of {_fmt(cov['denied'])} denied applicants "
                 f"(<b>{_fmt(cov['coverage'], True)}</b>) have a verified recourse with at most {cov['max_changes']} changes; "
                 f"{_fmt(cov['no_recourse_found'])} have none within the constraints.</p>"
                 + _table(["cost", "mean", "10 %", "25 %", "median", "75 %", "90 %"],
                          [["", *(_fmt(cd.get(k)) for k in ("mean", "q10", "q25", "q50", "q75", "q90"))]])
                 + _img(fig, "cost and number of changes") + "</section>")

    # fairness
    body = ['<section id="fairness"><h2>Fairness of recourse</h2><p class=note>Per group: approval rate, coverage '
            "(share of the group's denied applicants with recourse) and median cost, with 95 % bootstrap intervals; "
            "gaps are against the largest group.</p>"]
    for name, res in summary["fairness"].items():
        rows = [[html.escape(g["group"]), _fmt(g["applicants"]), _fmt(g["decision_rate"], True) + _ci(g["decision_rate_ci"], True),
                 _fmt(g["coverage"], True) + _ci(g["coverage_ci"], True), _fmt(g["median_cost"]) + _ci(g["median_cost_ci"])]
                for g in res["groups"]]
        body.append(f"<h3>{html.escape(labels.get(name, name))}</h3>"
                    + _table(["group", "applicants", "approval rate", "coverage", "median cost"], rows))
        gaps = [[html.escape(f"{g['group']} − {g['reference']}"), _fmt(g["decision_rate"], True) + _ci(g["decision_rate_ci"], True),
                 _fmt(g["coverage"], True) + _ci(g["coverage_ci"], True), _fmt(g["median_cost"]) + _ci(g["median_cost_ci"])]
                for g in res["gaps"]]
        if gaps:
            body.append(_table(["gap", "approval rate", "coverage", "median cost"], gaps))
        shown = [m for m in ("decision_rate", "coverage", "median_cost") if _varies([g[m] for g in res["groups"]])]
        if res["groups"] and shown:  # only the charts whose bars differ (a flat chart tells nothing)
            fig, axes = plt.subplots(1, len(shown), figsize=(3.8 * len(shown), 3.4), squeeze=False)
            names = [_wrap(g["group"]) for g in res["groups"]]
            for ax, metric in zip(axes[0], shown):
                vals = np.array([np.nan if g[metric] is None else g[metric] for g in res["groups"]], dtype=float)
                ci = np.array([[np.nan, np.nan] if g[f"{metric}_ci"][0] is None else g[f"{metric}_ci"] for g in res["groups"]], dtype=float)
                err = np.abs(np.vstack([vals - ci[:, 0], ci[:, 1] - vals]))
                ax.bar(range(len(vals)), np.nan_to_num(vals), yerr=np.nan_to_num(err), color="#6a9f58", capsize=3)
                ax.set_xticks(range(len(vals)), names, rotation=45, ha="right", fontsize=7)
                ax.set_title(metric.replace("_", " "))
            body.append(_img(fig, f"fairness by {labels.get(name, name)}"))
    parts.append("".join(body) + "</section>")

    # actions
    acts = summary["actions"]
    said = lambda key: action_words(key, labels)  # noqa: E731
    body = ['<section id="actions"><h2>Actions most often required</h2>']
    if acts["overall"]:
        fig, ax = _fig(7, 0.35 * len(acts["overall"]) + 1)
        ax.barh([_wrap(said(a["action"]), 44) for a in acts["overall"]][::-1], [a["share"] for a in acts["overall"]][::-1],
                color="#d8873b")
        ax.set_xlabel("share of recourses requiring it")
        body.append(_img(fig, "most frequent actions"))
    body.append(_table(["action", "count", "share"], [[html.escape(said(a["action"])), _fmt(a["count"]), _fmt(a["share"], True)]
                                                      for a in acts["overall"]]))
    for name, groups in acts["by_group"].items():
        rows = [[html.escape(g), "; ".join(f"{html.escape(said(a['action']))} ({_fmt(a['share'], True)})" for a in lst[:3])]
                for g, lst in groups.items()]
        body.append(f"<h3>by {html.escape(labels.get(name, name))}</h3>" + _table(["group", "top actions"], rows))
    parts.append("".join(body) + "</section>")

    # plausibility
    pl = summary["plausibility"]
    lof = table.loc[found, "lof"].to_numpy(dtype=float)
    fig, ax = _fig()
    ax.hist(lof[np.isfinite(lof)], bins=30, color="#8a5fc7")
    ax.axvline(1.0, color="k", lw=1), ax.set_xlabel("target-class LOF (≈1 = typical of approved applicants)")
    parts.append('<section id="plausibility"><h2>Plausibility</h2>'
                 + _table(["LOF", "mean", "median", "90 %", "share > 1.5"],
                          [["", _fmt(pl.get("mean")), _fmt(pl.get("q50")), _fmt(pl.get("q90")), _fmt(pl.get("share_above_1_5"), True)]])
                 + _img(fig, "LOF distribution") + "</section>")

    # stability
    st = summary.get("stability", {})
    fig, ax = _fig()
    if len(pairs):
        ok = np.isfinite(pairs["advice_distance"].to_numpy(dtype=float))
        ax.scatter(pairs["input_distance"][ok], pairs["advice_distance"][ok], s=8, alpha=.6)
        top = float(np.nanmax(pairs["input_distance"])) if pairs["input_distance"].notna().any() else 1.0
        ax.plot([0, top], [0, top], "k--", lw=.8, label="advice moves as much as the applicant")
        ax.legend(fontsize=8)
    ax.set_xlabel("distance between applicant and neighbour (cost units)"), ax.set_ylabel("distance between their recourses")
    parts.append('<section id="stability"><h2>Stability</h2>'
                 f"<p>{_fmt(st.get('sampled'))} denied applicants, each with a neighbour (noise σ = {_fmt(st.get('noise'))} × cost "
                 f"scale on the mutable numeric features). Both found: {_fmt(st.get('both_found'))}; same status: "
                 f"{_fmt(st.get('status_agrees'), True)}; same features changed: {_fmt(st.get('same_features_share'), True)}.</p>"
                 + _table(["", "median", "90 %", "max"], [
                     [name, _fmt(st.get(key, {}).get("q50")), _fmt(st.get(key, {}).get("q90")), _fmt(st.get(key, {}).get("max"))]
                     for name, key in (("input distance", "input_distance"), ("advice distance", "advice_distance"),
                                       ("advice ℓ2 (scaled)", "advice_l2"), ("ratio advice/input", "ratio"))])
                 + _img(fig, "stability scatter") + "</section>")

    # discrimination
    dis = summary["discrimination"]
    fig, ax = _fig()
    names = list(dis)
    ax.bar(range(len(names)), [dis[n]["share"] or 0 for n in names], color="#c74b4b")
    ax.set_xticks(range(len(names)), [_wrap(labels.get(n, n)) for n in names]), ax.set_ylabel("share of applicants whose decision flips")
    rows = [[html.escape(labels.get(n, n)), _fmt(d["changed_decisions"]), _fmt(d["share"], True), _fmt(d["denied_would_be_approved"]),
             _fmt(d["approved_would_be_denied"])] for n, d in dis.items()]
    parts.append('<section id="discrimination"><h2>Direct-discrimination probe</h2><p class=note>Each protected attribute '
                 "is set to every other value, everything else held fixed, and the model is asked again.</p>"
                 + _table(["attribute", "decisions changed", "share", "denied → approved", "approved → denied"], rows)
                 + _img(fig, "discrimination probe") + "</section>")

    # exact
    ex = summary.get("exact")
    if ex:
        fig, ax = _fig()
        both = (table.get("exact_status", pd.Series(dtype=str)) == "optimal") & found
        gap = (table.loc[both, "cost"] - table.loc[both, "exact_cost"]) / table.loc[both, "exact_cost"].clip(lower=1e-12)
        ax.hist(np.clip(gap.to_numpy(dtype=float), 0.0, 1.0), bins=40, color="#444")
        ax.axvline(ex["tolerance"], color="r", lw=1, label=f"{int(100 * ex['tolerance'])} %")
        ax.legend(fontsize=8)
        ax.set_xlabel("optimality gap (cost_APG − cost_exact) / cost_exact, clipped at 100 %")
        parts.append('<section id="exact"><h2>Exact answers (linear model, MILP)</h2>'
                     + _table(["", ""], [["exactly solved", _fmt(ex["solved"])], ["certified no recourse", _fmt(ex["certified_no_recourse"])],
                                         ["…of which reported as none", _fmt(ex["certified_none_reported_as_none"])],
                                         ["exact found, engine did not", _fmt(ex["apg_missed"])],
                                         [f"gap ≤ {int(100 * ex['tolerance'])} % (of compared)", _fmt(ex["share_within_tolerance_of_compared"], True)],
                                         ["median gap", _fmt(ex["gap"].get("q50"))], ["90 % gap", _fmt(ex["gap"].get("q90"))]])
                     + _img(fig, "optimality gap") + "</section>")
    else:
        parts.append('<section id="exact"><h2>Exact answers</h2><p>Not available: the model is not linear '
                     "(exact MILP answers need a logistic-regression bundle).</p></section>")
    parts.append("</body></html>")
    return "".join(parts)
