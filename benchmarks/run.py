"""Time tinymf and torch on the same recommender workloads, in one run.

For each workload every (framework, model form, threads, device) measurement runs in a
subprocess of its own (:mod:`benchmarks.worker`), one after another, so that no two compete
for the cores and the peak memory of each is its own. The run ends with a JSON record (the
machine, every sample's statistics, the comparisons) and a Markdown table.

    python -m benchmarks                    # lecture, ml-100k, synthetic-1m (~8 minutes)
    python -m benchmarks --quick            # tiny sizes, a few seconds a measurement
    python -m benchmarks --only ml-100k --profile --out results/
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.workloads import (  # noqa: E402
    QUICK_BUDGET,
    REPO,
    WORKLOADS,
    MissingDataError,
    Workload,
    data_dir,
    prepare,
)

CUDA_SKIPPED = "CUDA: skipped, no GPU (torch.cuda.is_available() is False)"
ENV_RECORDED = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "ATEN_CPU_CAPABILITY",
)
FORMS = ("embedding", "onehot")
MODEL_NAMES = {
    ("tinymf", "embedding"): "tinymf Embedding",
    ("tinymf", "onehot"): "tinymf one-hot Linear",
    ("torch", "embedding"): "torch Embedding",
    ("torch", "onehot"): "torch one-hot Linear",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="tinymf against torch: time per training step and epoch, ratings per "
        "second and peak memory, each measurement in its own process.",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes and a few steps (a smoke run)")
    p.add_argument("--out", type=Path, help="folder for benchmark.json, benchmark.md, profiles")
    p.add_argument(
        "--only",
        action="append",
        metavar="WORKLOAD",
        help=f"run only these workloads (repeat or comma-separate): {', '.join(WORKLOADS)}",
    )
    p.add_argument(
        "--with-10m",
        action="store_true",
        help="also run synthetic-10m (opt-in: about 4 minutes more on 2 cores)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="cProfile tinymf's training step (both forms) on --profile-workload",
    )
    p.add_argument("--profile-only", action="store_true", help="only the profile, no timing tables")
    p.add_argument("--profile-workload", default="ml-100k", choices=list(WORKLOADS))
    p.add_argument("--profile-steps", type=int, default=10)
    p.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds one measurement may take before it is reported as failed",
    )
    p.add_argument("--no-torch", action="store_true", help="measure tinymf only")
    return p.parse_args(argv)


def selected(args: argparse.Namespace) -> list[Workload]:
    if args.profile_only:
        return []
    if args.only:
        names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
        unknown = [n for n in names if n not in WORKLOADS]
        if unknown:
            raise SystemExit(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
        return [WORKLOADS[n] for n in WORKLOADS if n in names]
    return [w for w in WORKLOADS.values() if not w.opt_in or args.with_10m]


# -- the machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _openblas() -> dict:
    """NumPy's BLAS: its build, and what the loaded OpenBLAS says (threads, kernel core)."""
    import ctypes
    import glob

    import numpy as np

    out: dict = {}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        out.update(
            name=blas.get("name"),
            version=blas.get("version"),
            configuration=blas.get("openblas configuration"),
        )
    except Exception:  # show_config's layout is not a stable API
        pass
    try:
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            out["threads"] = pools[0].get("num_threads")
            out["core"] = pools[0].get("architecture")
            return out
    except ImportError:
        pass
    root = Path(np.__file__).resolve().parent
    libs = glob.glob(str(root.parent / "numpy.libs" / "*openblas*")) + glob.glob(
        str(root / ".libs" / "*openblas*")
    )
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("64_", ""):
                get_threads = getattr(handle, f"{prefix}get_num_threads{suffix}", None)
                get_core = getattr(handle, f"{prefix}get_corename{suffix}", None)
                if get_threads is not None:
                    get_threads.restype = ctypes.c_int
                    out["threads"] = get_threads()
                    if get_core is not None:
                        get_core.restype = ctypes.c_char_p
                        out["core"] = get_core().decode()
                    return out
    return out


def _git() -> dict:
    def git(*a: str) -> str | None:
        try:
            return subprocess.run(
                ["git", "--no-optional-locks", "-C", str(REPO), *a],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def _probe_torch(python: str, env: dict, tmp: Path) -> dict:
    out = tmp / "probe.json"
    try:
        subprocess.run(
            [python, "-m", "benchmarks.worker", "--probe", str(out)],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=120,
            check=True,
        )
        return json.loads(out.read_text())
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        return {"available": False, "reason": f"probe failed: {e}"}


def machine_info(torch_info: dict) -> dict:
    import numpy as np

    import tinymf

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "date_utc": now.isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_bytes": _mem_total_bytes(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _openblas(),
        "torch": torch_info,
        "tinymf": tinymf.__version__,
        "tinymf_git": _git(),
        "env": {k: os.environ.get(k) for k in ENV_RECORDED},
    }


# -- running the measurements --------------------------------------------------------------


def _configs(workload: Workload, info: dict, machine: dict, no_torch: bool) -> list[dict]:
    """Every measurement of one workload, with the reason where one cannot run."""
    torch_info = machine["torch"]
    rows = [dict(framework="tinymf", form=f, threads=None, device="cpu") for f in FORMS]
    if no_torch or not torch_info.get("available"):
        reason = "--no-torch" if no_torch else torch_info.get("reason", "torch not available")
        return rows + [
            dict(framework="torch", form=f, threads=None, device="cpu", skip=reason) for f in FORMS
        ]
    threads = [1] if torch_info["default_threads"] == 1 else [1, None]
    for form in FORMS:
        for t in threads:
            rows.append(dict(framework="torch", form=form, threads=t, device="cpu"))
    if torch_info.get("cuda_available"):
        rows += [dict(framework="torch", form=f, threads=None, device="cuda") for f in FORMS]

    # torch's one-hot form materialises the (ratings x users) and (ratings x items) matrices:
    # float32 kept for backward, plus the int64 one_hot they are converted from
    n = info["batch_size"] or info["n_ratings"]
    dense = (
        n * (info["n_users"] + info["n_items"]) * 4 + n * max(info["n_users"], info["n_items"]) * 8
    )
    for row in rows:
        if row["framework"] != "torch" or row["form"] != "onehot":
            continue
        limit = (
            torch_info.get("cuda_memory_bytes")
            if row["device"] == "cuda"
            else machine["memory_bytes"]
        )
        if limit and dense > limit / 2:
            row["skip"] = (
                f"dense one-hot input needs ~{dense / 2**30:,.0f} GiB, more than half of the "
                f"{limit / 2**30:.0f} GiB {'GPU' if row['device'] == 'cuda' else 'RAM'}"
            )
    return rows


def _run_worker(spec: dict, tmp: Path, env: dict, timeout: float) -> dict:
    spec_path = tmp / "spec.json"
    result_path = Path(spec["result_path"])
    result_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps(spec))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.worker", str(spec_path)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {timeout:.0f} s"}
    if result_path.is_file():
        return json.loads(result_path.read_text())
    tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
    return {"status": "error", "reason": f"worker exited {proc.returncode}: {' | '.join(tail)}"}


def _label(row: dict) -> str:
    if row["framework"] == "tinymf":
        return f"tinymf {row['form']} (numpy, one core)"
    threads = "default" if row["threads"] is None else row["threads"]
    return f"torch {row['form']} ({row['device']}, threads={threads})"


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_workload(
    workload: Workload, args: argparse.Namespace, machine: dict, tmp: Path, env: dict
) -> dict:
    npz = tmp / f"{workload.name}.npz"
    entry = {
        "workload": workload.name,
        "title": workload.title,
        "dim": workload.dim,
        "lr": workload.lr,
        "note": workload.quick_note if args.quick and workload.quick_note else workload.note,
        "results": [],
    }
    try:
        info = prepare(workload, args.quick, npz)
    except MissingDataError as e:
        _progress(str(e))
        entry["skipped"] = str(e)
        return entry
    entry.update(info)
    budget = QUICK_BUDGET if args.quick else workload.budget
    entry["budget"] = asdict(budget)

    rounds = 1 if args.quick else workload.rounds
    entry["rounds"] = rounds
    configs = _configs(workload, info, machine, args.no_torch)
    runs: list[list[dict]] = [[] for _ in configs]
    # rounds take the measurements in turn, so that a slow spell of the machine falls on all
    for rnd in range(rounds):
        for row, done in zip(configs, runs, strict=True):
            if "skip" in row:
                continue
            label = _label(row) + (f", round {rnd + 1}/{rounds}" if rounds > 1 else "")
            _progress(f"{workload.name}: {label} ...")
            spec = {
                **row,
                "data": str(npz),
                "dim": workload.dim,
                "lr": workload.lr,
                "seed": 21345,
                "budget": asdict(budget),
                "result_path": str(tmp / "result.json"),
            }
            result = _run_worker(spec, tmp, env, args.timeout)
            if result["status"] == "ok":
                _progress(
                    f"    median step {result['step']['median_s'] * 1e3:.3g} ms "
                    f"(CPU {result['step_cpu']['median_s'] * 1e3:.3g} ms) over "
                    f"{result['step']['n']} steps, peak +"
                    f"{_mib(result['memory']['peak_rss_growth_mib'])} MiB"
                )
            else:
                _progress(f"    {result['status']}: {result.get('reason')}")
            done.append(result)

    for row, done in zip(configs, runs, strict=True):
        if "skip" in row:
            _progress(f"{workload.name}: {_label(row)}: skipped, {row['skip']}")
            reason = row.pop("skip")
            entry["results"].append({**row, "status": "skipped", "reason": reason})
        else:
            entry["results"].append({**row, "threads_requested": row["threads"], **_merge(done)})
    npz.unlink(missing_ok=True)
    return entry


def _merge(rounds: list[dict]) -> dict:
    """One result from the rounds of a measurement: samples pooled, the largest peak kept."""
    from benchmarks.worker import _stats

    failed = next((r for r in rounds if r["status"] != "ok"), None)
    if failed is not None:
        failed.pop("traceback", None)
        return failed
    first = rounds[0]
    out = {k: v for k, v in first.items() if k != "samples"}
    for key in ("step", "epoch", "step_cpu", "epoch_cpu"):
        out[key] = _stats([x for r in rounds for x in r["samples"][key]])
    out["phases_median_s"] = {
        k: sorted(r["phases_median_s"][k] for r in rounds)[len(rounds) // 2]
        for k in first["phases_median_s"]
    }
    out["memory"] = max((r["memory"] for r in rounds), key=lambda m: m["peak_rss_mib"])
    out["n_losses"] = sum(r["n_losses"] for r in rounds)
    out["warmup_steps"] = sum(r["warmup_steps"] for r in rounds)
    out["load_average_1min"] = [
        min(r["load_average_1min"][0] for r in rounds),
        max(r["load_average_1min"][1] for r in rounds),
    ]
    out["wall_s"] = sum(r["wall_s"] for r in rounds)
    out["round_step_medians_s"] = [r["step"]["median_s"] for r in rounds]
    return out


def run_profile(args: argparse.Namespace, tmp: Path, env: dict) -> dict:
    """cProfile tinymf's step on one workload, once per form."""
    workload = WORKLOADS[args.profile_workload]
    npz = tmp / "profile.npz"
    try:
        info = prepare(workload, args.quick, npz)
    except MissingDataError as e:
        return {"workload": workload.name, "skipped": str(e)}
    out = {"workload": workload.name, **info, "forms": {}}
    for form in FORMS:
        _progress(f"profile: tinymf {form} on {workload.name} ...")
        text = (args.out / f"profile-{workload.name}-{form}.txt") if args.out else None
        spec = {
            "framework": "tinymf",
            "form": form,
            "threads": None,
            "device": "cpu",
            "data": str(npz),
            "dim": workload.dim,
            "lr": workload.lr,
            "seed": 21345,
            "budget": asdict(workload.budget),
            "result_path": str(tmp / "result.json"),
            "profile_steps": 2 if args.quick else args.profile_steps,
            "profile_text": None if text is None else str(text),
        }
        result = _run_worker(spec, tmp, env, args.timeout)
        if result["status"] == "ok":
            result["functions"].sort(key=lambda r: -r["self_ms_per_step"])
            result["functions"] = result["functions"][:60]
        out["forms"][form] = result
    npz.unlink(missing_ok=True)
    return out


# -- comparing and reporting -----------------------------------------------------------------


def _loss_agreement(a: list[float], b: list[float]) -> dict:
    k = min(len(a), len(b))
    diffs = [abs(x - y) for x, y in zip(a[:k], b[:k], strict=True)]
    first = next((i for i in range(k) if a[i] != b[i]), None)
    return {
        "steps_compared": k,
        "first_difference": first,
        "bit_equal": all(x == y for x, y in zip(a[:k], b[:k], strict=True)),
        "max_abs_diff": max(diffs) if diffs else None,
    }


def _same_arithmetic(tiny: dict, torch_run: dict) -> bool:
    """Whether a CPU torch run used the thread count and kernel level tinymf reproduced."""
    level = str(torch_run.get("cpu_capability", "")).lower()
    return tiny.get("imitated_threads") == torch_run["threads"] and (
        level == str(tiny.get("tinymf_profile", "")).lower()
    )


def compare(entry: dict) -> None:
    """tinymf / torch ratios for each torch row, against tinymf's model of the same form."""
    ok = [r for r in entry["results"] if r["status"] == "ok"]
    tiny = {r["form"]: r for r in ok if r["framework"] == "tinymf"}
    for r in ok:
        if r["framework"] != "torch" or r["form"] not in tiny:
            continue
        t = tiny[r["form"]]
        mem_t, mem_r = t["memory"]["peak_rss_growth_mib"], r["memory"]["peak_rss_growth_mib"]
        r["vs_tinymf"] = {
            "time_ratio": t["step"]["median_s"] / r["step"]["median_s"],
            "epoch_time_ratio": t["epoch"]["median_s"] / r["epoch"]["median_s"],
            "cpu_time_ratio": t["step_cpu"]["median_s"] / r["step_cpu"]["median_s"],
            "memory_ratio": (mem_t / mem_r) if mem_t is not None and mem_r else None,
            # tinymf reproduces torch's bits at one thread count and one kernel level:
            # compare losses only there
            "losses": _loss_agreement(t["losses_head"], r["losses_head"])
            if r["device"] == "cuda" or _same_arithmetic(t, r)
            else None,
        }
    n = entry["batch_size"] or entry["n_ratings"]
    for r in ok:
        r["ratings_per_s_step"] = n / r["step"]["median_s"]
        r["ratings_per_s_epoch"] = entry["n_ratings"] / r["epoch"]["median_s"]


def targets(workloads: list[dict]) -> list[dict]:
    """The speed goals, measured (never asserted): lecture 3x, ml-100k parity in time and
    memory with torch's Embedding model at the same thread count."""
    out = []
    by_name = {w["workload"]: w for w in workloads}

    def rows(name):
        return [r for r in by_name.get(name, {}).get("results", []) if r["status"] == "ok"]

    lecture = rows("lecture")
    for t in (r for r in lecture if r["framework"] == "tinymf"):
        for r in (
            r
            for r in lecture
            if r["framework"] == "torch" and r["device"] == "cpu" and r["form"] == t["form"]
        ):
            speedup = r["step"]["median_s"] / t["step"]["median_s"]
            out.append(
                {
                    "goal": "lecture: tinymf step at least 3x faster than torch eager (CPU)",
                    "tinymf": t["form"],
                    "torch": r["form"],
                    "torch_threads": r["threads"],
                    "speedup": speedup,
                    "cpu_speedup": r["step_cpu"]["median_s"] / t["step_cpu"]["median_s"],
                    "met": speedup >= 3,
                }
            )
    ml = rows("ml-100k")
    for t in (r for r in ml if r["framework"] == "tinymf"):
        for r in (
            r
            for r in ml
            if r["framework"] == "torch" and r["device"] == "cpu" and r["form"] == "embedding"
        ):
            ratio = t["step"]["median_s"] / r["step"]["median_s"]
            mt, mr = t["memory"]["peak_rss_growth_mib"], r["memory"]["peak_rss_growth_mib"]
            out.append(
                {
                    "goal": "ml-100k full batch: tinymf at least as fast as torch Embedding, "
                    "peak memory no larger",
                    "tinymf": t["form"],
                    "torch": "embedding",
                    "torch_threads": r["threads"],
                    "time_ratio": ratio,
                    "cpu_time_ratio": t["step_cpu"]["median_s"] / r["step_cpu"]["median_s"],
                    "memory_ratio": mt / mr if mt is not None and mr else None,
                    "met": ratio <= 1 and mt is not None and mr is not None and mt <= mr,
                }
            )
    return out


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


def _mib(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.1f}"


def _rate(r: float) -> str:
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if r >= div:
            return f"{r / div:.3g} {unit}"
    return f"{r:.3g}"


def _threads(r: dict) -> str:
    if r["framework"] == "tinymf":
        imitated = r.get("imitated_threads")
        return "1" if imitated is None else f"1 (bits of {imitated})"
    if r["device"] == "cuda":
        return "GPU"
    requested, actual = r.get("threads_requested", r["threads"]), r["threads"]
    if requested is None:
        return "default" if actual is None else f"{actual} (default)"
    return str(requested)


def render_markdown(report: dict) -> str:
    m = report["machine"]
    torch_info = m["torch"]
    blas = m["blas"]
    lines = [
        "# tinymf vs torch: training-step benchmark",
        "",
        f"- date: {m['date_utc']}; machine: {m['cpu_model']}, {m['usable_cpus']} usable "
        f"cores, {(m['memory_bytes'] or 0) / 2**30:.0f} GiB RAM; Python {m['python']}",
        f"- numpy {m['numpy']} ({blas.get('name')} {blas.get('version')}, BLAS threads "
        f"{blas.get('threads')}, core {blas.get('core')}); torch "
        f"{torch_info.get('version', 'not available')} (default threads "
        f"{torch_info.get('default_threads')}, CPU capability "
        f"{torch_info.get('cpu_capability')}); tinymf {m['tinymf']} at "
        f"{(m['tinymf_git']['commit'] or '?')[:10]}"
        f"{' + uncommitted changes' if m['tinymf_git']['dirty'] else ''}",
        "- env: " + ", ".join(f"{k}={v}" for k, v in m["env"].items() if v is not None)
        if any(v is not None for v in m["env"].values())
        else "- env: no BLAS/thread variables set",
        f"- {report['cuda']}",
        f"- mode: {'quick (tiny sizes)' if report['settings']['quick'] else 'full'}; "
        "times are medians of the timed steps after warm-up (IQR = 75th - 25th percentile); "
        "a step is forward, MSE loss, backward, Adam step, zero_grad and loss.item(); peak "
        "memory is the peak RSS growth over the process after imports and data "
        "(VmHWM), each measurement in its own process",
        "- CPU ms: median process CPU time of a step (all threads; robust to other load on "
        "the machine for one thread); of which init: the part of the peak that a first "
        "training step of a 2 x 2 model already adds (lazy kernels, thread pools); load: "
        "1-minute load average when the measurement started",
        "- threads: tinymf computes on one core; `bits of N`: the torch thread count whose "
        "results it reproduces (where torch's threads cut a reduction)",
        "- tinymf/torch: tinymf's median step time (peak memory) over torch's, for the same "
        "model form (below 1: tinymf faster / smaller); losses: tinymf's per-step losses "
        "against this torch run's, from the same initial weights, where torch ran the thread "
        "count and kernel level tinymf reproduces (torch picks AVX-512 kernels where the CPU "
        "has them unless ATEN_CPU_CAPABILITY says otherwise; speed is measured as torch runs)",
        "",
    ]
    for w in report["workloads"]:
        quick = report["settings"]["quick"]
        lines.append(f"## {w['workload']}" + (" (quick sizes)" if quick else f": {w['title']}"))
        lines.append("")
        if "skipped" in w:
            lines += [w["skipped"], ""]
            continue
        batch = (
            f"batches of {w['batch_size']:,} ({w['steps_per_epoch']} steps an epoch)"
            if w["batch_size"]
            else "full batch (an epoch is one step)"
        )
        lines += [
            f"{w['n_ratings']:,} ratings, {w['n_users']:,} users x {w['n_items']:,} items, "
            f"dim {w['dim']}, Adam lr {w['lr']}, {batch}; {w['note']}",
            "",
        ]
        head = ["model", "threads", "step ms (median)", "IQR ms", "CPU ms", "ratings/s"]
        if w["batch_size"]:
            head += ["epoch ms (median)", "epoch IQR ms"]
        head += [
            "peak RSS +MiB",
            "of which init",
            "steps timed",
            "load",
            "tinymf/torch time",
            "tinymf/torch memory",
            "losses",
        ]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        tiny_threads = {
            r["form"]: r.get("imitated_threads")
            for r in w["results"]
            if r["framework"] == "tinymf" and r["status"] == "ok"
        }
        for r in w["results"]:
            name = MODEL_NAMES[(r["framework"], r["form"])]
            if r["device"] == "cuda":
                name += " (CUDA)"
            if r["status"] != "ok":
                cells = [name, _threads(r), f"{r['status']}: {r['reason']}"]
                cells += [""] * (len(head) - len(cells))
                lines.append("| " + " | ".join(cells) + " |")
                continue
            s = r["step"]
            cells = [
                name,
                _threads(r),
                _ms(s["median_s"]),
                _ms(s["iqr_s"]),
                _ms(r["step_cpu"]["median_s"]),
                _rate(r["ratings_per_s_step"]),
            ]
            if w["batch_size"]:
                cells += [_ms(r["epoch"]["median_s"]), _ms(r["epoch"]["iqr_s"])]
            mem = r["memory"]
            cells += [
                _mib(mem["peak_rss_growth_mib"]),
                _mib(mem["first_step_init_mib"]),
                str(s["n"]),
                f"{r['load_average_1min'][0]:.1f}",
            ]
            v = r.get("vs_tinymf")
            if v:
                agree = v["losses"]
                if agree is None and r["threads"] != tiny_threads.get(r["form"]):
                    loss = "(other thread count)"
                elif agree is None:
                    loss = f"(torch's {r.get('cpu_capability')} kernels)"
                elif agree["bit_equal"]:
                    loss = f"bit-equal ({agree['steps_compared']} steps)"
                else:
                    loss = (
                        f"first differs at step {agree['first_difference']}, "
                        f"max diff {agree['max_abs_diff']:.2g}"
                    )
                cells += [
                    f"{v['time_ratio']:.2f}",
                    "" if v["memory_ratio"] is None else f"{v['memory_ratio']:.2f}",
                    loss,
                ]
            else:
                cells += ["", "", ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")

    if report["targets"]:
        lines += [
            "## Targets (measured, not asserted)",
            "",
            "| goal | tinymf | torch | torch threads | measured | met |",
            "|---|---|---|---|---|---|",
        ]
        for t in report["targets"]:
            th = "default" if t["torch_threads"] is None else t["torch_threads"]
            if "speedup" in t:
                measured = (
                    f"torch/tinymf step time {t['speedup']:.2f} (CPU time {t['cpu_speedup']:.2f})"
                )
            else:
                mem = "" if t["memory_ratio"] is None else f", memory {t['memory_ratio']:.2f}"
                measured = (
                    f"tinymf/torch step time {t['time_ratio']:.2f} (CPU time "
                    f"{t['cpu_time_ratio']:.2f}){mem}"
                )
            lines.append(
                f"| {t['goal']} | {t['tinymf']} | {t['torch']} | {th} | {measured} | "
                f"{'yes' if t['met'] else 'no'} |"
            )
        lines.append("")

    prof = report.get("profile")
    if prof and "forms" in prof:
        lines += [f"## Where tinymf's step goes: cProfile on {prof['workload']}", ""]
        timed = next((w for w in report["workloads"] if w["workload"] == prof["workload"]), None)
        ok = [r for r in (timed or {}).get("results", []) if r["status"] == "ok"]
        if ok:
            lines += [
                "Phases of a step without the profiler (medians, ms):",
                "",
                "| model | threads | forward + loss | backward | Adam step + zero_grad "
                "| loss.item() |",
                "|---|---|---|---|---|---|",
            ]
            for r in ok:
                ph = r["phases_median_s"]
                lines.append(
                    f"| {MODEL_NAMES[(r['framework'], r['form'])]} | {_threads(r)} | "
                    + " | ".join(
                        _ms(ph[k])
                        for k in ("forward_and_loss", "backward", "optimizer_step", "loss_item")
                    )
                    + " |"
                )
            lines.append("")
        for form, p in prof["forms"].items():
            if p["status"] != "ok":
                lines += [f"{form}: {p['status']}: {p.get('reason')}", ""]
                continue
            step_ms = p["profiled_step_s"] * 1e3
            lines += [
                f"### {MODEL_NAMES[('tinymf', form)]}: {step_ms:,.0f} ms of CPU time a step "
                f"under the profiler ({p['profile_steps']} steps, cProfile timed by process "
                f"CPU time; {p['function_calls_per_step']:,.0f} Python-level calls a step)",
                "",
                "| function (by own time) | calls/step | own ms/step | share "
                "| cumulative ms/step |",
                "|---|---|---|---|---|",
            ]
            for f in p["functions"][:15]:
                lines.append(
                    f"| `{f['function']}` | {f['calls_per_step']:.0f} | "
                    f"{f['self_ms_per_step']:.1f} | {f['self_ms_per_step'] / step_ms:.0%} | "
                    f"{f['cumulative_ms_per_step']:.1f} |"
                )
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workloads = selected(args)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tinymf-bench-") as tmp_name:
        tmp = Path(tmp_name)
        torch_info = (
            {"available": False, "reason": "--no-torch"}
            if args.no_torch
            else (_probe_torch(sys.executable, env, tmp))
        )
        machine = machine_info(torch_info)
        cuda = (
            CUDA_SKIPPED
            if not torch_info.get("cuda_available")
            else f"CUDA: {torch_info.get('cuda_device')}"
        )
        _progress(cuda)
        entries = []
        for w in workloads:
            entry = run_workload(w, args, machine, tmp, env)
            if "skipped" not in entry:
                compare(entry)
            entries.append(entry)
        wants_profile = args.profile or args.profile_only
        profile = run_profile(args, tmp, env) if wants_profile else None

    report = {
        "schema": 1,
        "machine": machine,
        "settings": {
            "quick": args.quick,
            "workloads": [w.name for w in workloads],
            "argv": sys.argv[1:] if argv is None else argv,
            "data_dir": str(data_dir()),
        },
        "cuda": cuda,
        "workloads": entries,
        "targets": targets(entries),
        "profile": profile,
        "total_wall_s": time.perf_counter() - started,
    }
    markdown = render_markdown(report)
    if args.out:
        (args.out / "benchmark.json").write_text(json.dumps(report, indent=1) + "\n")
        (args.out / "benchmark.md").write_text(markdown + "\n")
        _progress(f"wrote {args.out / 'benchmark.json'} and {args.out / 'benchmark.md'}")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
