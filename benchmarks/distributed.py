"""Data-parallel scaling: the same RBM fit in 1 process and in N processes (torchrun, gloo).

    python benchmarks/distributed.py [--rows 12000] [--hidden 500] [--batch 100] [--epochs 2] [--procs 2]

Runs, in one invocation: one process with --procs threads, one process with one thread, and
--procs processes with one thread each under ``torchrun --standalone``; prints rows/s and the
speed-up of the data-parallel run over each single-process run.  The data are random binary
rows (the speed of an update does not depend on the values).  ``--worker`` is the per-process
body (used by the launcher).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def worker(args) -> None:
    import numpy as np
    import torch

    from harmonium import RBM, distributed

    torch.set_num_threads(args.threads)
    X = (np.random.default_rng(0).random((args.rows, 784)) < 0.15).astype(np.float32)
    est = RBM(args.hidden, batch_size=args.batch, epochs=1, learning_rate=0.01, momentum=0.5,
              random_state=0, metrics=None)
    est.fit(X)  # warm-up epoch: process group, allocations, thread pools
    est.set_params(warm_start=True, epochs=1 + args.epochs)
    t0 = time.perf_counter()
    est.fit(X)
    seconds = time.perf_counter() - t0
    group = distributed.current()
    if group is None or group.is_main:
        print(json.dumps({"rows_per_s": args.rows * args.epochs / seconds, "seconds": seconds,
                          "world_size": 1 if group is None else group.world_size, "threads": args.threads}))


def launch(args, procs: int, threads: int) -> dict:
    common = ["--worker", "--rows", str(args.rows), "--hidden", str(args.hidden), "--batch", str(args.batch),
              "--epochs", str(args.epochs), "--threads", str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if procs == 1:
        cmd = [sys.executable, __file__, *common]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
               __file__, *common]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=12000)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--worker", action="store_true")
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    import torch

    print(f"RBM 784x{args.hidden}, CD-1, global batch {args.batch}, {args.rows} rows x {args.epochs} epochs, "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    runs = {f"1 process x {args.procs} threads": launch(args, 1, args.procs),
            "1 process x 1 thread": launch(args, 1, 1),
            f"{args.procs} processes x 1 thread (gloo)": launch(args, args.procs, 1)}
    dp = runs[f"{args.procs} processes x 1 thread (gloo)"]["rows_per_s"]
    for name, r in runs.items():
        print(f"{name:34s} {r['rows_per_s']:9.0f} rows/s   data-parallel speed-up over it: {dp / r['rows_per_s']:.2f}x")


if __name__ == "__main__":
    main()
