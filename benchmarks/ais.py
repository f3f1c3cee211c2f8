"""AIS throughput: a 784 x 500 Bernoulli RBM, 100 runs, the standard 14,500-beta schedule.

    python benchmarks/ais.py [--betas N] [--runs R] [--hidden H] [--device cuda]

Prints the wall time of ``harmonium.estimate.ais`` and the time of the same matrix products as
bare torch calls (two per intermediate distribution: v W and h W^T), measured in this process,
and their ratio (the issue's goal: within 2x).
"""

from __future__ import annotations

import argparse
import time

import torch

import harmonium as hm
from harmonium import estimate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--betas", type=int, default=None, help="number of betas (default 14,500)")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=500)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)

    def clock() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    g = torch.Generator().manual_seed(0)
    nv, nh = 784, args.hidden
    W = torch.randn(nv, nh, generator=g) * 0.05
    rbm = hm.RBM.from_arrays(W.numpy(), torch.randn(nv, generator=g).numpy() * 0.5 - 1,
                             torch.randn(nh, generator=g).numpy() * 0.1 - 1, dtype=args.dtype,
                             device=args.device)
    n_betas = len(estimate.default_betas(args.betas))
    dtype = getattr(torch, args.dtype)
    Wd = W.to(dtype=dtype, device=device)
    v = (torch.rand(args.runs, nv, generator=g) < 0.2).to(dtype=dtype, device=device)
    for _ in range(10):  # warm-up
        v @ Wd
    reps = min(n_betas, 2000)
    t = clock()
    for _ in range(reps):
        h = v @ Wd
        v2 = h @ Wd.T
    limit = (clock() - t) / reps * n_betas
    t = clock()
    r = estimate.ais(rbm, n_runs=args.runs, betas=args.betas, random_state=0)
    wall = clock() - t
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}")
    print(f"AIS {nv}x{nh}, {args.runs} runs, {n_betas} betas, {args.dtype}: {wall:.2f} s "
          f"(log Z = {r.log_z:.3f}, interval {r.log_z_interval[0]:.3f} .. {r.log_z_interval[1]:.3f})")
    print(f"matrix products alone: {limit:.2f} s; ratio {wall / limit:.2f}x (goal <= 2x)")
    del v2


if __name__ == "__main__":
    main()
