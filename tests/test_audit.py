"""Population audits: figures against an independent recomputation, resume, Dask, HTML, exact MILP, CLI errors."""
from __future__ import annotations

import base64
import itertools
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli import app
from recourse.milp import exact_recourse
from recourse.audit.html import SECTIONS
from recourse.audit.io import AuditInputError, ChunkSource, count_rows, done_chunks, iter_chunks
from recourse.audit.pipeline import run_audit
from recourse.audit.run import AuditConfig, action_key
from recourse.audit.stats import MISSING, band_labels, boot_median, group_order, group_values
from conftest import tiny_frame

runner = CliRunner()


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny_population(tmp_path_factory) -> Path:
    frame, _ = tiny_frame(300, seed=5)
    path = tmp_path_factory.mktemp("pop") / "tiny.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def german_population(tmp_path_factory, german_dataset) -> Path:
    path = tmp_path_factory.mktemp("pop") / "german.parquet"
    german_dataset.frame.iloc[:240].to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def german_audit(tmp_path_factory, german_bundle, german_population):
    config = AuditConfig(group_by=["status_sex", "age"], chunk_size=64, bootstrap=400, stability_n=30, seed=3)
    return run_audit(german_population, tmp_path_factory.mktemp("audit") / "german", german_bundle, config, progress=False)


def _table(result) -> pd.DataFrame:
    return pd.read_parquet(result.table_path)


# ---------------------------------------------------------------------- figures vs independent recomputation
@pytest.mark.slow
def test_report_figures_match_independent_recomputation(german_audit, german_engine, german_population):
    summary = german_audit.summary
    frame = pd.read_parquet(german_population)
    engine = german_engine
    fav = engine.classes.index(engine.schema.target.favourable)
    pred = engine.predict_proba(engine.encoder.encode(engine.validate(frame))).argmax(1)
    denied = pred != fav
    answers = []  # the same batches as the audit (chunks of 64 rows), so batch composition cannot matter
    for start in range(0, len(frame), 64):
        block = frame.iloc[start:start + 64][denied[start:start + 64]].reset_index(drop=True)
        answers += engine.explain(block, max_changes=3) if len(block) else []
    found = np.zeros(len(frame), dtype=bool)
    cost = np.full(len(frame), np.nan)
    found[np.flatnonzero(denied)] = [a.found for a in answers]
    cost[np.flatnonzero(denied)] = [a.metrics["cost"] if a.found else np.nan for a in answers]

    cov = summary["coverage"]
    assert cov["applicants"] == len(frame) and cov["denied"] == int(denied.sum())
    assert cov["recourse_found"] == int(found.sum())
    assert cov["coverage"] == pytest.approx(found.sum() / denied.sum(), abs=1e-6)
    assert cov["decision_rate"] == pytest.approx(1 - denied.mean(), abs=1e-6)
    assert cov["cost"]["q50"] == pytest.approx(float(np.median(cost[found])), rel=1e-5)
    changes = [len(a.actions) for a in answers if a.found]
    assert cov["changes"] == {str(k): changes.count(k) for k in range(1, 4)}

    # per group, numeric age binned at the training quartiles
    bins = summary["run"]["bins"]["age"]
    assert len(bins) >= 2
    age = frame["age"].to_numpy()
    for name, labels in (("status_sex", frame["status_sex"].astype(str).to_numpy()),
                         ("age", np.asarray(band_labels(bins), dtype=object)[np.digitize(age, bins)])):
        groups = {g["group"]: g for g in summary["fairness"][name]["groups"]}
        assert set(groups) == set(np.unique(labels))
        for g, row in groups.items():
            sel = labels == g
            assert row["applicants"] == int(sel.sum())
            assert row["decision_rate"] == pytest.approx(1 - denied[sel].mean(), abs=1e-6)
            if denied[sel].any():
                assert row["coverage"] == pytest.approx(found[sel].sum() / denied[sel].sum(), abs=1e-6)
            if found[sel].any():
                assert row["median_cost"] == pytest.approx(float(np.median(cost[sel & found])), rel=1e-5)
            lo, hi = row["decision_rate_ci"]
            assert lo - 1e-9 <= row["decision_rate"] <= hi + 1e-9
        ref = summary["fairness"][name]["reference"]
        for gap in summary["fairness"][name]["gaps"]:
            assert gap["decision_rate"] == pytest.approx(groups[gap["group"]]["decision_rate"] - groups[ref]["decision_rate"], abs=1e-5)

    # most frequent actions, recounted from the engine's own action lists
    counts = pd.Series([action_key(act) for a in answers for act in a.actions]).value_counts()
    overall = summary["actions"]["overall"]
    assert [item["count"] for item in overall] == counts.head(len(overall)).tolist()
    assert overall[0]["share"] == pytest.approx(counts.iloc[0] / found.sum(), abs=1e-6)

    # the discrimination probe, recomputed row by row
    table = _table(german_audit)
    for attr in ("status_sex",):
        levels = engine.schema.feature(attr).level_names
        flips = np.zeros(len(frame), dtype=int)
        for i in range(0, len(frame), 40):
            row = frame.iloc[[i]]
            for lvl in levels:
                if lvl == row[attr].iloc[0]:
                    continue
                alt = row.copy()
                alt[attr] = lvl
                flips[i] += int(engine.predict_proba(engine.encoder.encode(alt)).argmax(1)[0] != pred[i])
        assert (table[f"probe_{attr}"].to_numpy()[::40] == flips[::40]).all()
    assert summary["discrimination"]["status_sex"]["changed_decisions"] == int((table["probe_status_sex"] > 0).sum())

    # plausibility and stability figures are present and consistent
    assert summary["plausibility"]["n"] == int(np.isfinite(table.loc[table.status == "recourse_found", "lof"]).sum())
    st = summary["stability"]
    assert st["sampled"] == 30 and 0 <= st["both_found"] <= 30
    pairs = pd.read_csv(german_audit.out / "stability.csv")
    assert len(pairs) == 30 and set(pairs["row_id"]) <= set(table.loc[table.denied, "row_id"])


def test_bootstrap_median_matches_resampling():
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, 1.0, 301)
    fast = boot_median(values, 4000, np.random.default_rng(1))
    naive = np.median(values[rng.integers(0, len(values), (4000, len(values)))], axis=1)
    assert np.percentile(fast, [2.5, 50, 97.5]) == pytest.approx(np.percentile(naive, [2.5, 50, 97.5]), rel=0.05)


def test_group_values_bins_numeric_columns():
    labels = group_values(pd.Series([18, 26, 27, 40, 70]), [27.0, 40.0]).tolist()
    assert labels == ["< 27", "< 27", "[27, 40)", "≥ 40", "≥ 40"]


# ---------------------------------------------------------------------- resume
class Stop(Exception):
    pass


@pytest.mark.slow
def test_resume_after_interrupted_run(tmp_path, tiny_bundle, tiny_population):
    population = tmp_path / "pop.csv"
    pd.read_csv(tiny_population).head(180).to_csv(population, index=False)
    config = AuditConfig(group_by=["region", "income"], chunk_size=30, stability_n=10, bootstrap=100)
    full = run_audit(population, tmp_path / "full", tiny_bundle, config, progress=False)

    out = tmp_path / "resumed"
    first: list[int] = []

    def stop_after_two(k: int) -> None:
        first.append(k)
        if len(first) == 2:
            raise Stop

    with pytest.raises(Stop):
        run_audit(population, out, tiny_bundle, config, progress=False, on_chunk=stop_after_two)
    assert done_chunks(out / "parts") == {0, 1}
    (out / "parts" / "part-000002.parquet.tmp").write_bytes(b"half-written")  # a kill during a write
    second: list[int] = []
    resumed = run_audit(population, out, tiny_bundle, config, progress=False, on_chunk=second.append)
    assert second == [2, 3, 4, 5]  # nothing done twice
    a, b = _table(full), _table(resumed)
    assert b["row_id"].tolist() == list(range(180))  # nothing lost or counted twice
    pd.testing.assert_frame_equal(a.drop(columns=["p_favourable", "cost", "l2", "lof", "exact_cost"]),
                                  b.drop(columns=["p_favourable", "cost", "l2", "lof", "exact_cost"]))
    np.testing.assert_allclose(a["cost"], b["cost"], rtol=1e-6)
    assert resumed.summary["coverage"] == full.summary["coverage"]
    assert resumed.summary["run"]["rows_resumed"] == 60

    with pytest.raises(Exception, match="different population"):
        run_audit(population, out, tiny_bundle, AuditConfig(group_by=["region"], chunk_size=50), progress=False)


@pytest.mark.slow
@pytest.mark.integration
def test_resume_after_sigkill(tmp_path, tiny_bundle, tiny_population):
    """A process killed with SIGKILL (no clean-up at all) after its third chunk; the rerun finishes the job."""
    import os
    import subprocess
    import sys

    out = tmp_path / "killed"
    code = ("import os, signal, sys\n"
            "from recourse.bundle import load_bundle\n"
            "from recourse.audit.pipeline import run_audit\n"
            "from recourse.audit.run import AuditConfig\n"
            "def hook(k):\n"
            "    if k == 2: os.kill(os.getpid(), signal.SIGKILL)\n"
            "run_audit(sys.argv[1], sys.argv[2], load_bundle(sys.argv[3]), AuditConfig(group_by=['region'], chunk_size=70,"
            " stability_n=5, bootstrap=50), progress=False, on_chunk=hook)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tiny_population), str(out), str(tiny_bundle.path)],
                          env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    assert done_chunks(out / "parts") == {0, 1, 2} and not (out / "summary.json").exists()
    config = AuditConfig(group_by=["region"], chunk_size=70, stability_n=5, bootstrap=50)
    rest: list[int] = []
    resumed = run_audit(tiny_population, out, tiny_bundle, config, progress=False, on_chunk=rest.append)
    assert rest == [3, 4]
    table = _table(resumed)
    assert table["row_id"].tolist() == list(range(300))
    assert resumed.summary["coverage"]["applicants"] == 300 and resumed.summary["run"]["rows_resumed"] == 210


def test_parquet_chunks_are_exact(tmp_path):
    frame = pd.DataFrame({"a": np.arange(1003)})
    path = tmp_path / "p.parquet"
    frame.to_parquet(path, row_group_size=77)
    chunks = list(iter_chunks(path, 100, ["a"]))
    assert [k for k, _ in chunks] == list(range(11))
    assert [len(c) for _, c in chunks] == [100] * 10 + [3]
    assert np.concatenate([c["a"].to_numpy() for _, c in chunks]).tolist() == list(range(1003))


# ---------------------------------------------------------------------- dask
@pytest.mark.slow
@pytest.mark.integration
def test_dask_engine_matches_in_process(tmp_path, tiny_bundle, tiny_population):
    from distributed import Client, LocalCluster

    population = tmp_path / "small.parquet"
    pd.read_csv(tiny_population).head(150).to_parquet(population)
    config = AuditConfig(group_by=["region"], chunk_size=50, stability_n=5, bootstrap=50)
    local = run_audit(population, tmp_path / "local", tiny_bundle, config, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            remote = run_audit(population, tmp_path / "dask", tiny_bundle, config, progress=False,
                               engine_kind="dask", scheduler=cluster.scheduler_address)
            workers = client.run(lambda: 1)
    assert len(workers) == 2
    assert remote.summary["run"]["workers"] == 2
    a, b = _table(local), _table(remote)
    cols = ["row_id", "denied", "status", "n_changes", "actions", "counterfactual", "exact_status"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    np.testing.assert_allclose(a["cost"], b["cost"], rtol=1e-6)
    assert remote.summary["coverage"] == local.summary["coverage"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 120), size=st.integers(1, 50), group=st.integers(1, 40), fmt=st.sampled_from(["csv", "parquet"]),
       seed=st.integers(0, 2**16))
def test_a_worker_reads_exactly_the_chunk_the_streaming_reader_gives(tmp_path, rows, size, group, fmt, seed):
    """ChunkSource.read(k) (what a Dask worker reads by itself) equals the k-th chunk of iter_chunks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"id": np.arange(rows), "x": rng.normal(size=rows).round(6),
                          "level": rng.choice(["a, quoted", "b", "NA", ""], rows), "extra": 1})
    path = tmp_path / f"pop-{rows}-{size}-{group}-{seed}.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=group)
    columns = ["level", "id", "x"]
    source = ChunkSource.of(path, size, columns)
    expected = list(iter_chunks(path, size, columns))
    assert source.n_chunks == len(expected) and source.rows == count_rows(path)
    for k, chunk in expected:
        pd.testing.assert_frame_equal(source.read(k), chunk)


@pytest.mark.slow
@pytest.mark.integration
def test_a_worker_killed_mid_audit_loses_and_duplicates_no_row(tmp_path, tiny_bundle, tiny_population):
    """SIGKILL of a worker process after the first part: its tasks run again; the table equals the in-process one."""
    import os
    import signal

    from distributed import Client, LocalCluster

    population = tmp_path / "pop.csv"
    pd.read_csv(tiny_population).head(240).to_csv(population, index=False)
    config = AuditConfig(group_by=["region"], chunk_size=20, stability_n=0, bootstrap=50)
    local = run_audit(population, tmp_path / "local", tiny_bundle, config, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            pids = client.run(os.getpid)
            killed: list[int] = []

            def kill_one(k: int) -> None:
                if not killed:
                    victim = sorted(pids.values())[0]
                    os.kill(victim, signal.SIGKILL)
                    killed.append(victim)

            remote = run_audit(population, tmp_path / "dask", tiny_bundle, config, progress=False,
                               engine_kind="dask", scheduler=client, on_chunk=kill_one)
    assert killed
    a, b = _table(local), _table(remote)
    assert len(b) == 240 and b["row_id"].is_unique
    cols = ["row_id", "denied", "status", "n_changes", "actions", "counterfactual"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert remote.summary["coverage"] == local.summary["coverage"]


# ---------------------------------------------------------------------- the HTML report
class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections, self.images, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs)
        if tag in ("script", "link") or (attrs.get("href") or "").startswith("http"):
            self.links.append(tag)


@pytest.mark.slow
def test_html_report_parses_with_every_section_and_image(german_audit):
    text = german_audit.report_path.read_text()
    parser = _Collector()
    parser.feed(text)
    parser.close()
    assert parser.sections == list(SECTIONS)
    assert not parser.links  # self-contained: nothing fetched from the network
    alts = [img["alt"] for img in parser.images]
    for needed in ("cost and number of changes", "fairness by personal status and sex", "most frequent actions",
                   "LOF distribution", "stability scatter", "discrimination probe"):
        assert needed in alts
    for img in parser.images:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(german_audit.summary_path.read_text())
    assert summary["coverage"] == german_audit.summary["coverage"]


# ---------------------------------------------------------------------- exact answers
def _brute_force(engine, row: pd.Series, m: int, eps: float) -> float:
    """Cheapest admissible counterfactual of one TINY_SCHEMA row by enumerating the lattice."""
    income = np.round(np.arange(0, 1001) / 10, 1)
    years = np.arange(int(row["years"]), 41)  # increase only
    owner = np.array([False, True])
    grade = np.array(["low", "mid", "high"], dtype=object)
    grid = pd.DataFrame(list(itertools.product(income, years, owner, grade)), columns=["income", "years", "owner", "grade"])
    grid["region"] = row["region"]
    grid = grid[engine.schema.names]
    changed = ((grid["income"] != row["income"]).astype(int) + (grid["years"] != row["years"]).astype(int)
               + (grid["owner"] != row["owner"]).astype(int) + (grid["grade"] != row["grade"]).astype(int)).to_numpy()
    base = pd.DataFrame([row[engine.schema.names].to_dict()] * len(grid))
    cost = engine.encoder.change_costs(base, grid)
    fav = engine.classes.index(engine.schema.target.favourable)
    ok = (changed <= m) & (engine.margin(engine.encoder.encode(grid), np.full(len(grid), fav)) >= eps)
    return float(cost[ok].min()) if ok.any() else float("nan")


@pytest.mark.slow
def test_exact_milp_matches_brute_force_and_certifies_none(tiny_engine):
    frame, _ = tiny_frame(120, seed=11)
    engine = tiny_engine
    fav = engine.classes.index(engine.schema.target.favourable)
    pred = engine.predict_proba(engine.encoder.encode(engine.validate(frame))).argmax(1)
    denied = engine.validate(frame[pred != fav]).reset_index(drop=True)
    res1 = exact_recourse(engine, denied, max_changes=1)  # at the engine's confidence (its margin threshold)
    floor = engine.config.margin_threshold(len(engine.classes))
    assert res1 is not None and (res1.status != "error").all()
    none_rows = np.flatnonzero(res1.status == "infeasible")
    some_rows = np.flatnonzero(res1.status == "optimal")
    assert len(none_rows) > 0 and len(some_rows) > 0
    for i in [none_rows[0], *some_rows[:2]]:
        if res1.status[i] == "infeasible":
            assert np.isnan(_brute_force(engine, denied.iloc[i], 1, floor))  # none even at the threshold itself
        else:
            assert res1.cost[i] == pytest.approx(_brute_force(engine, denied.iloc[i], 1, floor + 1e-4), rel=1e-6)
    res3 = exact_recourse(engine, denied.iloc[:3], max_changes=3)
    for i in range(3):
        assert res3.cost[i] == pytest.approx(_brute_force(engine, denied.iloc[i], 3, floor + 1e-4), rel=1e-6)
    bare = exact_recourse(engine, denied.iloc[:3], max_changes=3, epsilon=1e-4)  # the bare decision: never dearer
    assert (np.nan_to_num(bare.cost, nan=np.inf) <= np.nan_to_num(res3.cost, nan=np.inf) + 1e-9).all()
    # the engine's answers are never cheaper than the certified optimum, and never exist where none does
    answers = engine.explain(denied, max_changes=1)
    apg = np.array([a.metrics["cost"] if a.found else np.nan for a in answers])
    assert not any(answers[i].found for i in none_rows)
    both = np.isfinite(apg) & (res1.status == "optimal")
    assert (apg[both] >= res1.cost[both] - 1e-6).all()


def test_exact_handles_values_off_the_precision_grid(tiny_engine):
    """An original income off the 0.1 grid may stay as it is; a moved one lands on the grid."""
    engine = tiny_engine
    frame, _ = tiny_frame(80, seed=3)
    frame["income"] = (frame["income"] + 0.037).clip(0, 100)
    pred = engine.predict_proba(engine.encoder.encode(frame)).argmax(1)
    denied = frame[pred != engine.classes.index(engine.schema.target.favourable)].reset_index(drop=True)
    res = exact_recourse(engine, denied, max_changes=1)
    assert (res.status != "error").all() and (res.status == "optimal").any()
    moved = (res.counterfactuals["income"] != denied["income"]).to_numpy() & (res.status == "optimal")
    assert np.allclose(np.round(res.counterfactuals.loc[moved, "income"] * 10), res.counterfactuals.loc[moved, "income"] * 10)
    answers = engine.explain(denied, max_changes=1)
    apg = np.array([a.metrics["cost"] if a.found else np.nan for a in answers])
    ok = np.isfinite(apg) & (res.status == "optimal")
    assert (apg[ok] >= res.cost[ok] - 1e-6).all()
    assert not (np.isfinite(apg) & (res.status == "infeasible")).any()


def test_exact_is_unavailable_for_mlp_bundles(german_engine, german_dataset):
    assert exact_recourse(german_engine, german_dataset.frame.iloc[:3], 3) is None


@pytest.mark.slow
def test_audit_reports_certified_no_recourse(tmp_path, tiny_bundle, tiny_population):
    config = AuditConfig(group_by=["region"], chunk_size=100, max_changes=1, stability_n=5, bootstrap=50)
    result = run_audit(tiny_population, tmp_path / "m1", tiny_bundle, config, progress=False)
    table = _table(result)
    ex = result.summary["exact"]
    none = table["exact_status"] == "infeasible"
    assert ex["certified_no_recourse"] == int(none.sum()) > 0
    assert ex["certified_none_reported_as_none"] == ex["certified_no_recourse"]
    assert (table.loc[none, "status"] == "no_recourse_found").all()
    assert ex["contradictions"] == 0
    both = (table["exact_status"] == "optimal") & (table["status"] == "recourse_found")
    assert ex["compared"] == int(both.sum())
    gap = (table.loc[both, "cost"] - table.loc[both, "exact_cost"]) / table.loc[both, "exact_cost"]
    assert ex["within_tolerance"] == int((gap <= 0.05 + 1e-9).sum())
    assert "exact" in result.report_path.read_text()

    limited = run_audit(tiny_population, tmp_path / "limited", tiny_bundle,
                        AuditConfig(group_by=["region"], chunk_size=100, max_changes=1, stability_n=0, bootstrap=50,
                                    exact_limit=150), progress=False)
    lt = _table(limited)
    assert (lt.loc[lt.row_id >= 150, "exact_status"] == "").all()
    assert ((lt.loc[lt.row_id < 150, "exact_status"] != "") == lt.loc[lt.row_id < 150, "denied"]).all()
    assert limited.summary["exact"]["solved"] == int(lt.loc[lt.row_id < 150, "denied"].sum())


# ---------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_audit_writes_report_and_csv(tmp_path, tiny_bundle, tiny_population):
    out = tmp_path / "cli"
    result = runner.invoke(app, ["audit", str(tiny_population), "--bundle", str(tiny_bundle.path), "--group-by", "region,income",
                                 "--out", str(out), "--format", "csv", "--no-progress", "--stability-n", "5", "--bootstrap", "50",
                                 "--bins", "income=30,60"])
    assert result.exit_code == 0, result.output
    assert "Audited 300 applicants" in result.stdout and "by income" in result.stdout
    table = pd.read_csv(out / "applicants.csv")
    assert len(table) == 300 and {"status", "n_changes", "cost", "actions", "lof"} <= set(table.columns)
    summary = json.loads((out / "summary.json").read_text())
    assert [g["group"] for g in summary["fairness"]["income"]["groups"]] == ["< 30", "[30, 60)", "≥ 60"]


@pytest.mark.parametrize("edit, message, rows", [
    (lambda f: f.drop(columns=["years"]), "missing column 'years'", 0),
    (lambda f: f.assign(income=["lots"] + list(f["income"].iloc[1:])), "row 1, column 'income': wrong type", 1),
    (lambda f: f.assign(grade=list(f["grade"].iloc[:-1]) + ["top"]), "row 300, column 'grade': unknown category 'top'", 1),
    (lambda f: f.assign(owner=["maybe"] + list(f["owner"].iloc[1:])), "row 1, column 'owner': wrong type", 1),
])
def test_cli_audit_bad_population_exits_2(tmp_path, tiny_bundle, tiny_population, edit, message, rows):
    path = tmp_path / "bad.csv"
    edit(pd.read_csv(tiny_population)).to_csv(path, index=False)
    result = runner.invoke(app, ["audit", str(path), "--bundle", str(tiny_bundle.path), "--out", str(tmp_path / "o"),
                                 "--no-progress", "--chunk-size", "100"])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert result.output.count("  - row") == rows  # only the bad cell is named, not its whole column


def test_cli_audit_bad_options_exit_2(tmp_path, tiny_bundle, tiny_population):
    base = ["--bundle", str(tiny_bundle.path), "--out", str(tmp_path / "o"), "--no-progress"]
    cases = [
        (["audit", str(tiny_population), "--group-by", "region,zodiac", *base], "--group-by: unknown column 'zodiac'"),
        (["audit", str(tmp_path / "nope.csv"), *base], "no such file"),
        (["audit", str(tiny_population.with_suffix(".xlsx")), *base], "no such file"),
        (["audit", str(tiny_population), "--bins", "income=a,b", "--group-by", "income", *base], "--bins income: edges must be numbers"),
        (["audit", str(tiny_population), "--engine", "dask", *base], "--scheduler: required"),
    ]
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases.append((["audit", str(tiny_population), "--bundle", str(tiny_bundle.path), "--out", str(a_file), "--no-progress"],
                  "exists and is not a directory"))
    header_only = tmp_path / "header.csv"
    pd.read_csv(tiny_population).head(0).to_csv(header_only, index=False)
    cases.append((["audit", str(header_only), *base], "no applicants"))
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    cases.append((["audit", str(garbage), *base], "cannot read the population"))
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output, (args, result.output)


# ---------------------------------------------------------------------- missing group values, options, --out
def test_missing_group_values_form_their_own_group():
    assert group_values(pd.Series(["a", None, "b", np.nan]), None).tolist() == ["a", MISSING, "b", MISSING]
    assert group_values(pd.Series([1.0, np.nan, 7.0]), [5.0]).tolist() == ["< 5", MISSING, "≥ 5"]
    labels = group_values(pd.Series(["b", None, "a"]), None).to_numpy()
    assert group_order(labels, None) == ["a", "b", MISSING]


def _audit(population: Path, out: Path, bundle, *extra: str):
    return runner.invoke(app, ["audit", str(population), "--bundle", str(bundle.path), "--out", str(out), "--no-progress",
                               "--stability-n", "0", "--bootstrap", "20", "--exact", "off", *extra])


def test_cli_audit_groups_missing_values(tmp_path, tiny_bundle, tiny_population):
    frame = pd.read_csv(tiny_population)
    frame["zone"] = np.where(np.arange(len(frame)) % 2, "a", "b").astype(object)
    frame.loc[3, "zone"] = None
    frame["score"] = np.arange(len(frame), dtype=float)
    frame.loc[[4, 5], "score"] = np.nan
    path = tmp_path / "pop.csv"
    frame.to_csv(path, index=False)
    result = _audit(path, tmp_path / "out", tiny_bundle, "--group-by", "zone,score")
    assert result.exit_code == 0, result.output
    fairness = json.loads((tmp_path / "out" / "summary.json").read_text())["fairness"]
    zone = {g["group"]: g["applicants"] for g in fairness["zone"]["groups"]}
    assert zone == {"a": 149, "b": 150, MISSING: 1}
    score = fairness["score"]["groups"]
    assert score[-1]["group"] == MISSING and score[-1]["applicants"] == 2 and sum(g["applicants"] for g in score) == 300


def test_cli_audit_all_missing_numeric_group_and_bins_options(tmp_path, tiny_bundle, tiny_population):
    frame = pd.read_csv(tiny_population).assign(score=np.nan)
    path = tmp_path / "pop.csv"
    frame.to_csv(path, index=False)
    cases = [
        (["--group-by", "score"], "--group-by: column 'score' has no values in the first 200 rows", "--bins score="),
        (["--group-by", "region", "--bins", "region=1,2"], "--bins: 'region' is not a numeric column", ""),
        (["--seed", "-1"], "--seed", ""),
        (["--max-changes", "0"], "--max-changes: must be a whole number ≥ 1, got 0", ""),
    ]
    for args, message, hint in cases:
        result = _audit(path, tmp_path / "o", tiny_bundle, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and hint in result.output and "Traceback" not in result.output, (args, result.output)
    result = _audit(path, tmp_path / "o", tiny_bundle, "--group-by", "score", "--bins", "score=1,2")
    assert result.exit_code == 0, result.output
    groups = json.loads((tmp_path / "o" / "summary.json").read_text())["fairness"]["score"]["groups"]
    assert [(g["group"], g["applicants"]) for g in groups] == [(MISSING, 300)]
    for value in ("6", "9223372036854775808"):  # the one options rule: above the 5 features means all of them
        result = _audit(path, tmp_path / f"m{value[:3]}", tiny_bundle, "--group-by", "region", "--max-changes", value)
        assert result.exit_code == 0, result.output
        summary = json.loads((tmp_path / f"m{value[:3]}" / "summary.json").read_text())
        assert summary["coverage"]["max_changes"] == 5


def test_cli_audit_leaves_a_foreign_out_directory_alone(tmp_path, tiny_bundle, tiny_population):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.html").write_text("my report")
    result = _audit(tiny_population, out, tiny_bundle)
    assert result.exit_code == 2 and "holds files that are not an audit's" in result.output, result.output
    result = _audit(tiny_population, out, tiny_bundle, "--fresh")
    assert result.exit_code == 2 and "holds files that are not an audit's" in result.output, result.output
    assert [p.name for p in out.iterdir()] == ["report.html"] and (out / "report.html").read_text() == "my report"


def test_cli_audit_damaged_state_file(tmp_path, tiny_bundle, tiny_population):
    out = tmp_path / "audit"
    assert _audit(tiny_population, out, tiny_bundle).exit_code == 0
    (out / "state.json").write_text("{damaged")
    result = _audit(tiny_population, out, tiny_bundle)
    assert result.exit_code == 2 and "state.json is damaged" in result.output and "--fresh" in result.output, result.output
    result = _audit(tiny_population, out, tiny_bundle, "--fresh")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "state.json").read_text())["fingerprint"]


@pytest.mark.slow
def test_the_report_leads_with_its_findings_in_the_schemas_words(german_audit):
    from recourse.audit.html import findings

    text = german_audit.report_path.read_text()
    assert text.index('id="findings"') < text.index('id="overview"')
    lines = findings(german_audit.summary, {"status_sex": "personal status and sex", "age": "age"})
    cov = german_audit.summary["coverage"]
    assert f"of the {cov['denied']} denied applicants" in lines[0]
    probe = german_audit.summary["discrimination"]["status_sex"]
    said = [line for line in lines if "personal status and sex alone" in line]
    assert said and (("flips" in said[0]) == bool(probe["changed_decisions"]))
    assert any(line.startswith("Stability:") for line in lines)
    # actions are named with the schema's labels, not internal names
    assert "checking account balance → " in text and "status → " not in text


def test_action_keys_in_words():
    from recourse.audit.html import action_words

    labels = {"status": "checking account balance", "credit_amount": "credit amount", "telephone": "registered telephone"}
    assert action_words("status → 200 DM or more", labels) == "checking account balance → 200 DM or more"
    assert action_words("decrease credit_amount", labels) == "decrease credit amount"
    assert action_words("telephone on", labels) == "registered telephone on"
    assert action_words("unknown_feature", labels) == "unknown_feature"


def test_an_audit_stopped_by_bad_input_runs_again_once_the_input_is_fixed(tmp_path, tiny_bundle):
    frame, _ = tiny_frame(120, seed=8)
    bad = frame.astype({"income": object})
    bad.loc[100, "income"] = "lots"
    population = tmp_path / "pop.csv"
    bad.to_csv(population, index=False)
    out = tmp_path / "audit"
    config = AuditConfig(group_by=["region"], chunk_size=50, stability_n=5, bootstrap=50)
    with pytest.raises(AuditInputError, match="income"):
        run_audit(population, out, tiny_bundle, config, progress=False)
    frame.to_csv(population, index=False)  # fixed
    result = run_audit(population, out, tiny_bundle, config, progress=False)
    assert result.summary["coverage"]["applicants"] == 120
