"""Reproductions of published experiments (docs/RESULTS.md records the numbers).

``run(name, out_dir, quick=False, data_dir=None, seed=0, device="cpu", config=None)`` runs one
experiment of ``EXPERIMENTS``, writes ``out_dir/results.json`` (numbers, configuration, wall times,
torch version, threads, device) and pictures (``filters.png``, ``samples.png``), and returns the
results as a dict.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

from .dbm_mnist import run_dbm_mnist
from .grbm_patches import run_grbm_patches
from .movielens import run_movielens
from .rbm_mnist import run_rbm_mnist
from .rbm_mnist_likelihood import run_rbm_mnist_likelihood

EXPERIMENTS: dict[str, Callable[..., dict]] = {
    "rbm-mnist": run_rbm_mnist,
    "rbm-mnist-likelihood": run_rbm_mnist_likelihood,
    "movielens": run_movielens,
    "grbm-patches": run_grbm_patches,
    "dbm-mnist": run_dbm_mnist,
}

__all__ = ["EXPERIMENTS", "run"]


def _jsonable(x: Any, strict: bool = True) -> Any:
    """``x`` with tensors' and arrays' scalars as Python numbers; with ``strict``, non-finite floats
    as the strings "inf", "-inf", "nan" (strict JSON has no such numbers)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v, strict) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v, strict) for v in x]
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
        x = x.item()
    if strict and isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def cpu_model() -> str:
    """The processor's model name (Linux's /proc/cpuinfo; elsewhere what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device="cpu") -> dict:
    """What a result depends on besides the code and the seed: the device, the CPU model and the vector
    instructions torch's kernels use on it (float32 kernels round differently on different
    instruction sets, so training is bit-reproducible only on the same kind of CPU), the core count and the platform."""
    import torch

    return {"device": torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else str(device),
            "cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_count": os.cpu_count(), "platform": platform.platform()}


def run(name: str, out_dir, quick: bool = False, data_dir=None, seed: int = 0, device: str = "cpu",
        **options) -> dict:
    """Run experiment ``name`` with every model on ``device``; write ``out_dir/results.json`` and
    pictures; return the results (as written, except that non-finite numbers stay floats).
    ``options`` go to the experiment's function: ``config`` (a dict of entries replacing the preset's,
    e.g. ``{"epochs": 200}``) for all, ``only=("pcd",)`` for ``rbm-mnist-likelihood``."""
    import torch

    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(sorted(EXPERIMENTS))}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    if quick:  # tiny models: one thread is faster and immune to oversubscription on a busy machine
        torch.set_num_threads(1)
    try:
        results = EXPERIMENTS[name](out, quick=quick, data_dir=data_dir, seed=seed, device=device, **options)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
    results = {
        "experiment": name,
        "quick": bool(quick),
        "seed": int(seed),
        **results,
        "wall_time_s": time.perf_counter() - t0,
        "torch_version": torch.__version__,
        "torch_threads": used_threads,
        **machine_info(device),
    }
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=2) + "\n")
    return _jsonable(results, strict=False)  # numbers stay numbers: an open interval's end is -inf
