"""One measurement in a fresh process: one framework, one model form, one thread setting.

A process of its own gives each measurement the same starting point: the framework imported,
the rating arrays loaded and wrapped as tensors, and then the peak resident set size reset
(``/proc/self/clear_refs``), so that the peak read at the end is what building the model and
training it added, measured the same way for tinymf and for torch.

Run by :mod:`benchmarks.run` as ``python -m benchmarks.worker SPEC.json``; the result is
written as JSON to the spec's ``result_path``. ``python -m benchmarks.worker --probe OUT``
writes what torch reports about itself (threads, CPU capability, CUDA) instead.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

LOSSES_KEPT = 50  # losses of the first steps, to check both frameworks computed the same


def _proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process in KiB (Linux only; empty elsewhere)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":")
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_kib() -> tuple[int, str]:
    status = _proc_status()
    if "VmHWM" in status:
        return status["VmHWM"], "VmHWM"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"


def _stats(xs: list[float]) -> dict:
    import numpy as np

    a = np.asarray(xs, dtype=np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {
        "n": int(a.size),
        "median_s": float(med),
        "q1_s": float(q1),
        "q3_s": float(q3),
        "iqr_s": float(q3 - q1),
        "min_s": float(a.min()),
        "mean_s": float(a.mean()),
    }


# -- the two frameworks, each running the lecture's four steps -------------------------------


def _torch_session(spec: dict):
    import torch

    from reference.model import MatrixFactorization

    device = torch.device(spec["device"])

    def build(n_users: int, n_items: int):
        torch.manual_seed(spec["seed"])
        model = MatrixFactorization(n_users, n_items, dim=spec["dim"], form=spec["form"])
        model = model.to(device)
        optimizer = torch.optim.Adam(model.lecture_parameters(), lr=spec["lr"])
        return model, optimizer, torch.nn.MSELoss()

    return (lambda a: torch.from_numpy(a).to(device)), build


def _tinymf_session(spec: dict):
    import tinymf
    from tinymf.models import MatrixFactorization

    def build(n_users: int, n_items: int):
        tinymf.manual_seed(spec["seed"])
        model = MatrixFactorization(n_users, n_items, dim=spec["dim"], form=spec["form"])
        optimizer = tinymf.optim.Adam(model.lecture_parameters(), lr=spec["lr"])
        return model, optimizer, tinymf.nn.MSELoss()

    return tinymf.from_numpy, build


def _batches(arrays: dict, wrap) -> list[tuple]:
    """(users, items, ratings as a column) per step, already as the framework's tensors."""
    n = len(arrays["ratings"])
    size = n if arrays["batch_size"] < 0 else arrays["batch_size"]
    out = []
    for begin in range(0, n, size):
        s = slice(begin, begin + size)
        out.append(
            (
                wrap(arrays["users"][s].copy()),
                wrap(arrays["items"][s].copy()),
                wrap(arrays["ratings"][s].reshape(-1, 1).copy()),
            )
        )
    return out


def _make_step(model, optimizer, loss_fn, batches, sync):
    clock, cpu = time.perf_counter, time.process_time

    def step(b: int) -> tuple[float, list[float]]:
        users, items, y = batches[b]
        c0 = cpu()
        t0 = clock()
        loss = loss_fn(model(users, items), y)
        t1 = clock()
        loss.backward()
        t2 = clock()
        optimizer.step()
        optimizer.zero_grad()
        t3 = clock()
        value = loss.item()  # the lecture's loop reads every loss
        sync()
        t4 = clock()
        return value, [t1 - t0, t2 - t1, t3 - t2, t4 - t3, cpu() - c0]

    return step


PHASES = ("forward_and_loss", "backward", "optimizer_step", "loss_item")


def _time(step, n_batches: int, budget: dict) -> dict:
    """Warm up, then time whole epochs (and the steps inside them) until the budget says stop."""
    clock = time.perf_counter
    losses = []
    warm, start = 0, clock()
    while warm < budget["warmup_steps"]:
        losses.append(step(warm % n_batches)[0])
        warm += 1
        if clock() - start >= budget["warmup_seconds"]:
            break

    steps, epochs, phases, cpu_epochs = [], [], [], []
    start = clock()
    while True:
        e0, c0 = clock(), time.process_time()
        for b in range(n_batches):
            s0 = clock()
            loss, parts = step(b)
            steps.append(clock() - s0)
            phases.append(parts)
            losses.append(loss)
        epochs.append(clock() - e0)
        cpu_epochs.append(time.process_time() - c0)
        n, elapsed = len(epochs), clock() - start
        if (
            n >= budget["max_epochs"]
            or (n >= budget["min_epochs"] and elapsed >= budget["min_seconds"])
            or (n >= budget["floor_epochs"] and elapsed >= budget["max_seconds"])
        ):
            break

    import numpy as np

    ph = np.asarray(phases)
    return {
        "warmup_steps": warm,
        "step": _stats(steps),
        "epoch": _stats(epochs),
        "step_cpu": _stats(ph[:, len(PHASES)].tolist()),
        "epoch_cpu": _stats(cpu_epochs),
        "samples": {
            "step": steps,
            "epoch": epochs,
            "step_cpu": ph[:, len(PHASES)].tolist(),
            "epoch_cpu": cpu_epochs,
        },
        "phases_median_s": {name: float(np.median(ph[:, k])) for k, name in enumerate(PHASES)},
        "losses_head": losses[:LOSSES_KEPT],
        "n_losses": len(losses),
        "loss_last": losses[-1],
    }


def _profile(step, n_batches: int, spec: dict) -> dict:
    """cProfile over ``profile_steps`` steps after two warm-up steps; per-step numbers."""
    import cProfile
    import pstats

    for b in range(2):
        step(b % n_batches)
    steps = spec["profile_steps"]
    # CPU time, not wall time: other processes on the machine then do not inflate the shares
    profiler = cProfile.Profile(time.process_time)
    start = time.process_time()
    profiler.enable()
    for b in range(steps):
        step(b % n_batches)
    profiler.disable()
    total = (time.process_time() - start) / steps

    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, name), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():
        rows.append(
            {
                "function": _where(file, line, name),
                "calls_per_step": ncalls / steps,
                "self_ms_per_step": 1e3 * tottime / steps,
                "cumulative_ms_per_step": 1e3 * cumtime / steps,
            }
        )
    if spec.get("profile_text"):
        with open(spec["profile_text"], "w") as f:
            stats.stream = f
            stats.sort_stats("tottime").print_stats(40)
            stats.sort_stats("cumulative").print_stats(40)
            stats.sort_stats("tottime").print_callers(12)
    return {
        "profile_steps": steps,
        "profiled_step_s": total,
        "function_calls_per_step": stats.total_calls / steps,
        "functions": rows,
    }


def _where(file: str, line: int, name: str) -> str:
    """``tinymf/arith.py:58(fma)``, or NumPy's ``<method 'at' of 'numpy.ufunc' objects>``."""
    if file == "~":
        return name
    parts = Path(file).parts
    for anchor in ("tinymf", "reference", "benchmarks", "numpy", "torch"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return f"{'/'.join(parts[i:])}:{line}({name})"
    return f"{Path(file).name}:{line}({name})"


def measure(spec: dict) -> dict:
    """Build the model in a fresh process, train it under the budget, report time and memory."""
    wall = time.perf_counter()
    framework, device = spec["framework"], spec["device"]
    info: dict = {}
    if framework == "torch":
        import torch

        if spec["threads"] is not None:
            torch.set_num_threads(spec["threads"])
        info["threads"] = torch.get_num_threads()
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if device == "cuda":
            info["cuda_device"] = torch.cuda.get_device_name(0)

            def sync():
                torch.cuda.synchronize()
        else:

            def sync():
                pass

        session = _torch_session
    else:
        import tinymf

        info["threads"] = 1  # NumPy's elementwise loops and this training loop use one core
        # the torch thread count whose bits tinymf reproduces (where its reductions are cut)
        info["imitated_threads"] = tinymf.arith.get_num_threads()
        info["tinymf_profile"] = tinymf.arith.get_profile()

        def sync():
            pass

        session = _tinymf_session

    import numpy as np

    with np.load(spec["data"]) as npz:
        arrays = {k: npz[k] for k in ("users", "items", "ratings")}
        for k in ("n_users", "n_items", "batch_size"):
            arrays[k] = int(npz[k])
    wrap, build = session(spec)
    batches = _batches(arrays, wrap)
    n_users, n_items = arrays["n_users"], arrays["n_items"]
    del arrays

    # the starting line: framework imported, data in tensors; nothing of the model yet
    baseline = _proc_status().get("VmRSS")
    reset = _reset_peak()
    # what any first training step costs once (lazy kernels, thread pools, allocator caches,
    # a CUDA context), measured on a 2 x 2 model and reported apart from the workload's own
    tiny = {
        "users": np.array([0, 1]),
        "items": np.array([1, 0]),
        "ratings": np.array([1.0, 2.0], np.float32),
        "batch_size": -1,
    }
    tiny_step = _make_step(*build(2, 2), _batches(tiny, wrap), sync)
    for _ in range(2):
        tiny_step(0)
    del tiny_step
    after_init = _proc_status().get("VmRSS")
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_base = torch.cuda.memory_allocated()
    load_before = os.getloadavg()[0]

    model, optimizer, loss_fn = build(n_users, n_items)
    step = _make_step(model, optimizer, loss_fn, batches, sync)
    if spec.get("profile_steps"):
        return {"status": "ok", **info, **_profile(step, len(batches), spec)}
    result = _time(step, len(batches), spec["budget"])

    peak, method = _peak_kib()
    memory = {
        "baseline_rss_mib": None if baseline is None else baseline / 1024,
        "peak_rss_mib": peak / 1024,
        "peak_rss_growth_mib": None if baseline is None else max(0, peak - baseline) / 1024,
        "first_step_init_mib": None if baseline is None else (after_init - baseline) / 1024,
        "method": method + ("" if reset else " (not reset: a lower bound)"),
    }
    if device == "cuda":
        memory["cuda_peak_growth_mib"] = (torch.cuda.max_memory_allocated() - cuda_base) / 2**20
    return {
        "status": "ok",
        **info,
        **result,
        "memory": memory,
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "wall_s": time.perf_counter() - wall,
    }


def probe() -> dict:
    """What torch says about this machine, read in a process of its own."""
    try:
        import torch
    except ImportError as e:
        return {"available": False, "reason": f"torch not importable: {e}"}
    out = {
        "available": True,
        "version": torch.__version__,
        "default_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl": torch.backends.mkl.is_available(),
        "openmp": torch.backends.openmp.is_available(),
        "cuda_available": torch.cuda.is_available(),
    }
    if out["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        out["cuda_device"] = props.name
        out["cuda_memory_bytes"] = props.total_memory
        out["cuda_version"] = torch.version.cuda
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["--probe"]:
        Path(argv[1]).write_text(json.dumps(probe()))
        return 0
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = measure(spec)
    except Exception as e:  # reported as a row of the table, not a crash of the whole run
        result = {
            "status": "error",
            "reason": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
        }
    Path(spec["result_path"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
