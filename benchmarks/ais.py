"""AIS throughput: a 784 x 500 Bernoulli RBM, 100 runs, the standard 14,500-beta schedule.

    python benchmarks/ais.py [--betas N] [--runs R] [--hidden H]

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
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    nv, nh = 784, args.hidden
    W = torch.randn(nv, nh, generator=g) * 0.05
    rbm = hm.RBM.from_arrays(W.numpy(), torch.randn(nv, generator=g).numpy() * 0.5 - 1,
                             torch.randn(nh, generator=g).numpy() * 0.1 - 1, dtype=args.dtype)
    n_betas = len(estimate.default_betas(args.betas))
    dtype = getattr(torch, args.dtype)
    Wd = W.to(dtype)
    v = (torch.rand(args.runs, nv, generator=g) < 0.2).to(dtype)
    reps = min(n_betas, 2000)
    t = time.perf_counter()
    for _ in range(reps):
        h = v @ Wd
        v2 = h @ Wd.T
    limit = (time.perf_counter() - t) / reps * n_betas
    t = time.perf_counter()
    r = estimate.ais(rbm, n_runs=args.runs, betas=args.betas, random_state=0)
    wall = time.perf_counter() - t
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"AIS {nv}x{nh}, {args.runs} runs, {n_betas} betas, {args.dtype}: {wall:.2f} s "
          f"(log Z = {r.log_z:.3f}, interval {r.log_z_interval[0]:.3f} .. {r.log_z_interval[1]:.3f})")
    print(f"matrix products alone: {limit:.2f} s; ratio {wall / limit:.2f}x (goal <= 2x)")
    del v2


if __name__ == "__main__":
    main()
