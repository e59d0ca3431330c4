"""benchmarks/tutorial_async.py runs end to end (--quick, small sizes) and writes its JSON and chart.

Only that it completes and what it writes are checked, never its timings.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from asyncrag.testing import milvus_package_available

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "tutorial_async.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load_script():
    spec = importlib.util.spec_from_file_location("tutorial_async", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # its dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


tutorial = _load_script()


def check_report(data: dict, *, backends: list[str], sizes: list[int], sync_sizes: list[int]) -> None:
    assert data["benchmark"] == "tutorial_async"
    assert data["config"]["dim"] == 768 and data["config"]["top_k"] == 3
    assert data["config"]["sizes"] == sizes and data["config"]["sync_sizes"] == sync_sizes
    assert data["tutorial"]["async_add"]["1000"] == 3.22 and data["tutorial"]["sync_search"]["1000"] == 308.8
    expected = {
        (backend, experiment, n)
        for backend in backends
        for experiment in tutorial.EXPERIMENTS
        for n in (sync_sizes if experiment.startswith("sync") else sizes)
    }
    got = {(r["backend"], r["experiment"], r["n"]) for r in data["results"]}
    assert got == expected
    for r in data["results"]:
        for store in tutorial.STORES:
            assert isinstance(r[store], float) and r[store] > 0
        assert r["ratio"] == pytest.approx(r["MilvusVectorStore"] / r["asyncrag"])
        repeats = data["config"]["repeat"] if r["experiment"].startswith("async") else 1
        for store in tutorial.STORES:  # each store's time is its best run
            assert 1 <= len(r["runs"][store]) <= repeats and r[store] == min(r["runs"][store])
        if r["experiment"].startswith("async"):  # the floor: all the work in one pymilvus request
            assert r["one request"] == min(r["runs"]["one request"]) > 0
            assert r["best_ratio"] == pytest.approx(r["MilvusVectorStore"] / r["one request"])
            for floor, share in (("one request", "share_of_ceiling"), ("one request + client", "share_of_client_ceiling")):
                assert r[floor] == min(r["runs"][floor]) > 0  # each floor ran right after asyncrag's runs
                assert len(r["runs"][floor]) == len(r["runs"]["asyncrag"])
                pairs = zip(r["runs"][floor], r["runs"]["asyncrag"], strict=True)
                assert r[share] == pytest.approx(statistics.median(one / ours for one, ours in pairs))
            # asyncrag's Milvus requests in its best run, and their mean batch: the table explains itself
            assert 1 <= r["requests"] <= r["n"] and r["mean_batch"] == pytest.approx(r["n"] / r["requests"])
        else:
            assert r["one request"] is None and "one request" not in r["runs"] and r["share_of_ceiling"] is None


@pytest.mark.slow
def test_quick_benchmark_script_on_both_backends(tmp_path: Path) -> None:
    out = tmp_path / "results" / "tutorial.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--sizes",
            "10,200",
            "--corpus",
            "200",
            "--repeat",
            "2",
            "--out",
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--quick: sync experiments ran at 10 only" in proc.stdout
    assert "MilvusVectorStore" in proc.stdout and "asyncrag" in proc.stdout and "one request" in proc.stdout
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["note"].startswith("--quick")
    backends = ["server", "lite"] if milvus_package_available() else ["lite"]
    if milvus_package_available():
        assert data["skipped"] == {}
    else:
        assert "server" in data["skipped"]
    check_report(data, backends=backends, sizes=[10, 200], sync_sizes=[10])
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--backends", "lite,serverr", "choose from server,lite"),
        ("--sizes", "10,0", "positive call counts"),
        ("--repeat", "0", "a positive whole number"),
        ("--corpus", "-5", "a positive whole number"),
        ("--repeat", "two", "'two': a positive whole number"),
        ("--sizes", "10,ten", "positive call counts"),
    ],
)
def test_bad_arguments_stop_before_any_run(
    flag: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        tutorial.main([flag, value, "--out", str(tmp_path / "r.json")])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_without_matplotlib_the_json_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    out = tmp_path / "lite.json"
    argv = ["--backends", "lite", "--sizes", "10", "--corpus", "20", "--repeat", "2", "--out", str(out)]
    assert tutorial.main(argv) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "no chart drawn" in warnings[0] and "matplotlib" in warnings[0]
    assert not out.with_suffix(".png").exists()
    data = json.loads(out.read_text())
    assert data["quick"] is False and data["note"] is None and data["config"]["repeat"] == 2
    check_report(data, backends=["lite"], sizes=[10], sync_sizes=[10])
