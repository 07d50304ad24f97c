"""The benchmark scripts' record format, on their ``--tiny`` configuration, and the results page.

``benchmarks/run.py --tiny --cpu-only`` runs every script in seconds on small real subsets into a
temporary folder; the records must follow the format of ``benchmarks/common.py``. The committed
results files must validate, and the book's appendix must render one row per record.
"""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "book" / "_ext"))

from benchmarks import common, run  # noqa: E402

import benchmark_table  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Every script's tiny mode through the one command, into a temporary results folder."""
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               TQDM_DISABLE="1")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--tiny", "--cpu-only",
                           "--results", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(out.glob("*.json"))
    assert files, "no results file written"
    return out, files, proc.stdout


def _good_record(**changes):
    rec = {"name": "mnist5k_cnn_test_acc", "value": 0.99, "goal": ">= 0.985", "met": True,
           "unit": "accuracy", "dataset": "MNIST", "device": "cpu-2core", "machine": "a CPU, 2 cores",
           "seconds": 12.5, "commit": "0123456789ab", "when": "2026-11-23T20:00:00"}
    rec.update(changes)
    return {k: v for k, v in rec.items() if v is not _DROP}


_DROP = object()


@pytest.mark.slow                  # the tiny run of every script: about 2 minutes on 2 cores
def test_tiny_run_writes_valid_records_of_every_script(tiny_run):
    folder, files, stdout = tiny_run
    goals = run.all_goals()
    records = []
    for path in files:
        data = json.loads(path.read_text())                 # well-formed JSON: a list of objects
        assert isinstance(data, list) and data
        for rec in data:
            common.validate(rec)
            assert path.stem == rec["device"], "a record lands in the file of its device"
            assert rec.get("tiny") is True
            assert rec["name"] in goals, f"{rec['name']} is not declared in any script's GOALS"
            assert rec["goal"] == goals[rec["name"]].goal and rec["unit"] == goals[rec["name"]].unit
            assert re.fullmatch(r"cpu-\d+core", rec["device"]), "--cpu-only measures on the CPU"
            assert rec["commit"] == common.git_commit()
            if rec["met"] is False or rec["value"] is None:
                assert rec["note"].strip()
            if rec["met"] is False:
                assert "goal missed" in rec["note"]
            if rec["value"] is not None:
                assert math.isfinite(rec["value"])
        records += data
    keys = [(r["name"], r["dataset"]) for r in records]
    assert len(keys) == len(set(keys)), "a (name, dataset) pair appears twice in one run"
    # every script ran and produced at least one record; only GPU records are missing
    produced = {r["name"] for r in records}
    for script in run.discover():
        module = run.load(script)
        assert produced & set(module.GOALS), f"bench_{script}.py produced no record"
        for name, g in module.GOALS.items():
            if g.cpu:
                assert name in produced, f"CPU record {name} missing"
            if not g.cpu:
                assert name not in produced, f"GPU-only record {name} made by --cpu-only"


@pytest.mark.slow                  # the tiny run of every script: about 2 minutes on 2 cores
def test_tiny_records_never_go_to_the_committed_results(tiny_run):
    folder, files, _ = tiny_run
    tiny_records = json.loads(files[0].read_text())
    with pytest.raises(ValueError, match="tiny"):
        common.write(tiny_records[:1], common.RESULTS_DIR)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--tiny"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "--results" in proc.stderr


@pytest.mark.parametrize("change, message", [
    ({"value": _DROP}, "missing field 'value'"),
    ({"value": "0.99"}, "wrong type"),
    ({"value": True, "met": None}, "wrong type"),
    ({"value": float("nan"), "met": False, "note": "x"}, "finite"),
    ({"goal": "at least 0.985"}, "goal"),
    ({"goal": "=> 0.985"}, "goal"),
    ({"met": False, "note": "x"}, "met=False"),
    ({"value": 0.9, "met": True}, "met=True"),
    ({"value": 0.9, "met": False}, "needs a note"),
    ({"value": None, "met": None}, "needs a note"),
    ({"device": "my laptop"}, "device"),
    ({"commit": "HEAD"}, "commit"),
    ({"seconds": -1.0}, "seconds"),
    ({"name": "Bad Name"}, "name"),
    ({"when": "yesterday"}, "ISO"),
    ({"colour": "red"}, "unknown fields"),
    ({"dataset": ""}, "empty"),
])
def test_validator_rejects_bad_records(change, message):
    common.validate(_good_record())                          # the good one passes
    with pytest.raises(ValueError, match=re.escape(message)):
        common.validate(_good_record(**change))


def test_goal_directions():
    assert common.goal_met(0.99, ">= 0.985") is True and common.goal_met(0.98, ">= 0.985") is False
    assert common.goal_met(1.01, "<= 1.02") is True and common.goal_met(1.03, "<= 1.02") is False
    assert common.goal_met(5.0, "report") is None and common.goal_met(None, ">= 1") is None
    assert common.parse_goal("<= 1e-4") == ("<=", 1e-4)
    with pytest.raises(ValueError):
        common.Goal("x", "about 3", "s", "bad goal")


def test_record_builder_notes_a_missed_goal():
    g = common.Goal("fashion_cnn_test_acc", ">= 0.93", "accuracy", "test")
    rec = common.record(g, 0.91, dataset="Fashion-MNIST", seconds=3.0, note="5 epochs", device="cpu")
    assert rec["met"] is False and rec["note"].startswith("goal missed: 0.91 vs >= 0.93; 5 epochs")
    with pytest.raises(ValueError, match="needs a note"):
        common.record(g, None, dataset="Fashion-MNIST", device="cpu")


def test_write_replaces_same_name_and_dataset_only(tmp_path):
    a = _good_record(value=0.99)
    b = _good_record(value=0.995, when="2026-11-24T20:00:00")
    c = _good_record(dataset="MNIST, another protocol")
    common.write([a, c], tmp_path)
    common.write([b], tmp_path)
    data = json.loads((tmp_path / "cpu-2core.json").read_text())
    assert sorted((r["dataset"], r["value"]) for r in data) == [("MNIST", 0.995), ("MNIST, another protocol", 0.99)]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    with pytest.raises(ValueError, match="twice"):
        common.write([a, b], tmp_path)


def test_committed_results_validate():
    files = sorted(common.RESULTS_DIR.glob("*.json"))
    assert files, "no committed results file in benchmarks/results/"
    goals = run.all_goals()
    for path in files:
        records = common.read_results(path)
        common.validate_run(records)
        for rec in records:
            assert rec["device"] == path.stem
            assert "tiny" not in rec, f"{path.name}: a --tiny record was committed"
            assert rec["name"] in goals
            assert rec["goal"] == goals[rec["name"]].goal, f"{rec['name']}: goal changed since the run"


def test_notebook_times_are_summed_and_checked():
    from benchmarks import bench_notebooks

    times = {"notebooks/01_a.ipynb": {"seconds": 50.5, "passed": True, "when": "2026-11-23 20:00:00"},
             "notebooks/02_b.ipynb": {"seconds": 20.0, "passed": False, "when": "2026-11-23 19:00:00"}}
    total, problems = bench_notebooks.total_seconds(times, ["notebooks/01_a.ipynb", "notebooks/02_b.ipynb",
                                                            "notebooks/03_c.ipynb"], since="2026-11-23 19:30:00")
    assert total == 70.5
    assert any("02_b" in p and "earlier run" in p for p in problems)
    assert any("02_b" in p and "failed" in p for p in problems)
    assert any("03_c" in p and "no time" in p for p in problems)
    assert len(bench_notebooks.notebook_paths()) == len(list((ROOT / "notebooks").glob("[0-9]*.ipynb")))


@pytest.mark.slow                  # the tiny run of every script: about 2 minutes on 2 cores
def test_appendix_renders_one_row_per_record(tiny_run):
    folder, _, _ = tiny_run
    goals = run.all_goals()
    for records in (common.load_all(), common.load_all(folder)):
        rows = benchmark_table.table_rows(records, goals)
        measured = [r for r in rows if r["measured"]]
        assert len(measured) == len(records)
        assert sorted((r["record"], r["dataset"]) for r in measured) == \
            sorted((r["name"], r["dataset"]) for r in records)
        missing = {r["record"] for r in rows if not r["measured"]}
        assert missing == set(goals) - {r["name"] for r in records}
        ids = [r["id"] for r in rows]
        assert len(set(ids)) == len(ids), "two rows share a record id"
        text = benchmark_table.render_markdown(records, goals)
        table = [line for line in text.splitlines() if line.startswith("| `")]
        details = [line for line in text.splitlines() if line.startswith("- `")]
        assert sorted(table) == sorted(f"| `{r['id']}` | " + " | ".join(
            benchmark_table._cell(r[c]) for c in benchmark_table.SUMMARY[1:]) + " |" for r in rows)
        assert [d.split("`")[1] for d in details] == [t.split("`")[1] for t in table]   # one each, same order
        for rec in records:
            assert rec["device"] in text and rec["commit"] in text   # machine and code of every record
        assert all(line.count(" | ") == len(benchmark_table.SUMMARY) - 1 for line in table), \
            "a cell broke the pipe table"
        assert set(benchmark_table.SUMMARY) - {"id"} | set(benchmark_table.DETAILS) | {"record"} == \
            set(benchmark_table.COLUMNS)
        sections = [line for line in text.splitlines() if line.startswith("### Chapter")]
        assert sections and sections == sorted(sections, key=lambda h: int(h.split()[2].rstrip(":")))


def test_record_ids_are_unique_when_one_name_has_two_set_ups():
    goals = {"x_acc": common.Goal("x_acc", ">= 0.5", "accuracy", "x")}
    recs = [_good_record(name="x_acc", dataset="A"), _good_record(name="x_acc", dataset="B"),
            _good_record(name="x_acc", dataset="A", device="cuda-H200")]
    rows = benchmark_table.table_rows(recs, goals)
    assert sorted(r["id"] for r in rows) == ["x_acc@cpu-2core#1", "x_acc@cpu-2core#2", "x_acc@cuda-H200"]


def test_literature_references_cite_known_keys():
    from pybtex.database import parse_file

    keys = set(parse_file(str(ROOT / "book" / "references.bib")).entries.keys())
    cited = {k.strip() for g in run.all_goals().values()
             for group in re.findall(r"\{cite(?::[pt])?\}`([^`]+)`", g.reference) for k in group.split(",")}
    assert cited and cited <= keys, f"missing from references.bib: {sorted(cited - keys)}"


def test_appendix_page_is_in_the_book():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert "book/benchmarks" in files and "book/references" in files
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["sphinx"]["local_extensions"]["benchmark_table"] == "book/_ext"
    assert "{benchmark-results}" in (ROOT / "book" / "benchmarks.md").read_text()
    assert "bench" in (ROOT / "Makefile").read_text() and "benchmarks/run.py" in (ROOT / "README.md").read_text()
