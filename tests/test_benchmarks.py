"""The benchmark command runs end to end at tiny sizes and reports what it promises.

Structure only: no test here looks at a time, since a time proves nothing on a shared machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from benchmarks import run as bench
from benchmarks.workloads import QUICK_BUDGET, WORKLOADS, MissingDataError, prepare

REPO = Path(__file__).resolve().parents[1]
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_quick_lecture_run_writes_json_and_markdown(tmp_path):
    proc = _run(
        "-m", "benchmarks", "--quick", "--only", "lecture", "--no-torch", "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr

    report = json.loads((tmp_path / "benchmark.json").read_text())
    machine = report["machine"]
    for key in ("cpu_model", "logical_cpus", "numpy", "blas", "torch", "date_utc", "env"):
        assert key in machine
    assert {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"} <= set(machine["env"])

    (lecture,) = report["workloads"]
    assert (lecture["workload"], lecture["n_ratings"]) == ("lecture", 63)
    rows = {(r["framework"], r["form"]): r for r in lecture["results"]}
    for form in ("embedding", "onehot"):
        mine = rows[("tinymf", form)]
        assert mine["status"] == "ok", mine.get("reason")
        assert mine["step"]["n"] >= QUICK_BUDGET.min_epochs
        assert set(mine["step"]) >= {"median_s", "q1_s", "q3_s", "iqr_s"}
        assert mine["memory"]["peak_rss_growth_mib"] >= 0
        assert mine["ratings_per_s_step"] > 0
        assert rows[("torch", form)]["status"] == "skipped"

    markdown = (tmp_path / "benchmark.md").read_text()
    assert "| model | threads | step ms (median) |" in markdown
    assert "tinymf one-hot Linear" in markdown
    assert "CUDA:" in markdown
    assert proc.stdout.strip() == markdown.strip()


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_torch_worker_reports_the_same_fields_as_tinymf(tmp_path):
    data = tmp_path / "lecture.npz"
    prepare(WORKLOADS["lecture"], quick=True, path=data)
    results = {}
    for framework in ("tinymf", "torch"):
        spec = {
            "framework": framework,
            "form": "embedding",
            "threads": 1,
            "device": "cpu",
            "data": str(data),
            "dim": 2,
            "lr": 0.1,
            "seed": 21345,
            "budget": asdict(QUICK_BUDGET),
            "result_path": str(tmp_path / f"{framework}.json"),
        }
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        proc = _run("-m", "benchmarks.worker", str(tmp_path / "spec.json"))
        assert proc.returncode == 0, proc.stderr
        results[framework] = json.loads((tmp_path / f"{framework}.json").read_text())

    mine, theirs = results["tinymf"], results["torch"]
    assert theirs["status"] == "ok", theirs.get("reason")
    assert theirs["threads"] == 1
    assert set(mine) - {"tinymf_profile", "imitated_threads"} == set(theirs) - {"cpu_capability"}
    assert set(mine["memory"]) == set(theirs["memory"])
    # same data, same seed: both start from the same weights, so the first loss is the same
    assert mine["losses_head"][0] == theirs["losses_head"][0]


def _machine(cuda: bool) -> dict:
    torch_info = {"available": True, "default_threads": 2, "cuda_available": cuda}
    if cuda:
        torch_info["cuda_memory_bytes"] = 80 * 2**30
    return {"torch": torch_info, "memory_bytes": 24 * 2**30}


def test_losses_are_compared_only_where_torch_ran_the_arithmetic_tinymf_reproduces():
    def row(framework, threads, **extra):
        timing = {"median_s": 1e-3}
        return {
            "framework": framework, "form": "embedding", "device": "cpu", "status": "ok",
            "threads": threads, "step": timing, "epoch": timing, "step_cpu": timing,
            "memory": {"peak_rss_growth_mib": 1.0}, "losses_head": [1.0, 0.5], **extra,
        }  # fmt: skip

    tiny = row("tinymf", 1, imitated_threads=2, tinymf_profile="avx2")
    runs = [row("torch", 2, cpu_capability=c) for c in ("AVX2", "AVX512")]
    runs.append(row("torch", 1, cpu_capability="AVX2"))
    bench.compare({"results": [tiny, *runs], "batch_size": None, "n_ratings": 63})

    same, other_level, other_threads = (r["vs_tinymf"]["losses"] for r in runs)
    assert same["bit_equal"] and same["steps_compared"] == 2
    assert other_level is None and other_threads is None


def test_torch_runs_with_one_thread_and_its_default_and_cuda_only_when_available():
    info = {"n_ratings": 63, "n_users": 9, "n_items": 8, "batch_size": None}
    rows = bench._configs(WORKLOADS["lecture"], info, _machine(cuda=False), no_torch=False)
    torch_rows = [r for r in rows if r["framework"] == "torch"]
    assert {(r["form"], r["threads"]) for r in torch_rows} == {
        (f, t) for f in ("embedding", "onehot") for t in (1, None)
    }
    assert all(r["device"] == "cpu" and "skip" not in r for r in rows)

    rows = bench._configs(WORKLOADS["lecture"], info, _machine(cuda=True), no_torch=False)
    assert {r["form"] for r in rows if r["device"] == "cuda"} == {"embedding", "onehot"}


def test_torch_one_hot_is_skipped_with_a_reason_where_it_cannot_fit():
    info = {"n_ratings": 1_000_000, "n_users": 100_000, "n_items": 20_000, "batch_size": None}
    rows = bench._configs(WORKLOADS["synthetic-1m"], info, _machine(cuda=False), False)
    for r in rows:
        if r["framework"] == "torch" and r["form"] == "onehot":
            assert "dense one-hot" in r["skip"]
        else:
            assert "skip" not in r


def test_markdown_says_cuda_was_skipped_without_a_gpu():
    report = {
        "machine": {
            "date_utc": "2026-01-01T00:00:00+00:00",
            "cpu_model": "cpu",
            "usable_cpus": 2,
            "memory_bytes": 2**30,
            "python": "3",
            "numpy": "2",
            "blas": {},
            "torch": {"available": False},
            "tinymf": "0",
            "tinymf_git": {"commit": None, "dirty": None},
            "env": {},
        },
        "cuda": bench.CUDA_SKIPPED,
        "settings": {"quick": True},
        "workloads": [],
        "targets": [],
        "profile": None,
    }
    assert "CUDA: skipped, no GPU (torch.cuda.is_available() is False)" in (
        bench.render_markdown(report)
    )


def test_missing_movielens_skips_that_workload_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYMF_SHARED_DATA", str(tmp_path))
    with pytest.raises(MissingDataError, match="ml-100k: skipped"):
        prepare(WORKLOADS["ml-100k"], quick=True, path=tmp_path / "x.npz")


def test_the_script_form_runs_from_anywhere(tmp_path):
    proc = _run(str(REPO / "benchmarks" / "run.py"), "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout and "--only" in proc.stdout
