"""The tutorial benchmark runs end to end (--quick, small sizes) and writes its JSON and chart.

Only that it completes and what it writes are checked, never its timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asyncrag.testing import milvus_package_available
from asyncrag.bench.tutorial import EXPERIMENTS, STORES
from asyncrag.cli import app

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.slow


def check_report(data: dict, *, backends: list[str], sizes: list[int], sync_sizes: list[int]) -> None:
    assert data["benchmark"] == "tutorial_async"
    assert data["config"]["dim"] == 768 and data["config"]["top_k"] == 3
    assert data["config"]["sizes"] == sizes and data["config"]["sync_sizes"] == sync_sizes
    assert data["tutorial"]["async_add"]["1000"] == 3.22 and data["tutorial"]["sync_search"]["1000"] == 308.8
    expected = {
        (backend, experiment, n)
        for backend in backends
        for experiment in EXPERIMENTS
        for n in (sync_sizes if experiment.startswith("sync") else sizes)
    }
    got = {(r["backend"], r["experiment"], r["n"]) for r in data["results"]}
    assert got == expected
    for r in data["results"]:
        for store in STORES:
            assert isinstance(r[store], float) and r[store] > 0
        assert r["ratio"] == pytest.approx(r["MilvusVectorStore"] / r["asyncrag"])
        repeats = data["config"]["repeat"] if r["experiment"].startswith("async") else 1
        for store in STORES:  # each store's time is its best run
            assert 1 <= len(r["runs"][store]) <= repeats and r[store] == min(r["runs"][store])
        if r["experiment"].startswith("async"):  # the floor: all the work in one pymilvus request
            assert r["one request"] == min(r["runs"]["one request"]) > 0
            assert r["best_ratio"] == pytest.approx(r["MilvusVectorStore"] / r["one request"])
        else:
            assert r["one request"] is None and "one request" not in r["runs"]
    png = Path(data["chart"])
    assert png.is_file() and png.read_bytes()[:8] == PNG_MAGIC


def test_quick_benchmark_script_on_both_backends(tmp_path: Path) -> None:
    out = tmp_path / "results" / "tutorial.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "tutorial_async.py"),
            "--quick",
            "--sizes",
            "10,200",
            "--corpus",
            "200",
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
    assert out.with_suffix(".png").is_file()


def test_cli_bench_tutorial_on_lite(tmp_path: Path) -> None:
    out = tmp_path / "cli.json"
    result = CliRunner().invoke(
        app, ["bench", "tutorial", "--backends", "lite", "--sizes", "10", "--corpus", "20", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["quick"] is False and data["note"] is None
    check_report(data, backends=["lite"], sizes=[10], sync_sizes=[10])
