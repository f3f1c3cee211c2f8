"""Re-estimate a saved DBM's log Z with more annealing, and the average test ELBO each estimate gives.

Runs forward AIS (base-rate start fitted to the binarised MNIST training rows, as the dbm-mnist
experiment) in batches of ``--runs`` runs, for each parity of the annealed layers and each seed, prints
every batch, then pools all batches of a parity (the mean of all their importance weights: the same
estimator with more runs) and prints the pooled log Z, its 3-sigma interval and ESS, and the average
test ELBO on the 10,000 test digits (thresholded at 0.5) with that log Z.

    python scripts/dbm_log_z.py DBM.safetensors [--betas 100000] [--runs 100] [--parities 0 1]
        [--seeds 10 11] [--threads 1] [--data-dir DIR] [--json OUT (rewritten after every batch)]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

import harmonium as hm
from harmonium import estimate
from harmonium.experiments._common import mnist_binarized


def save(out: dict, path: str | None) -> None:
    """Write what has been estimated so far (a long run that is stopped keeps its finished batches)."""
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(out, f, indent=1)
        os.replace(path + ".tmp", path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--betas", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--parities", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 11])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dbm = hm.load(args.model)
    X_tr, _, _, _, X_te, *_ = mnist_binarized(args.data_dir)
    base = torch.as_tensor(X_tr)
    # ELBO(v) = (its value with log Z = 0) - log Z: the mean-field part is computed once
    unnormalised = float(estimate.elbo(dbm, torch.as_tensor(X_te), 0.0).mean())
    out = {"model": args.model, "betas": args.betas, "runs_per_batch": args.runs, "batches": [], "pooled": {}}
    for parity in args.parities:
        done = []
        for seed in args.seeds:
            t = time.perf_counter()
            r = estimate.ais(dbm, n_runs=args.runs, betas=args.betas, base_rate=base, random_state=seed,
                             parity=parity)
            row = dict(parity=parity, seed=seed, log_z=r.log_z, interval=list(r.log_z_interval), ess=r.ess,
                       test_elbo=unnormalised - r.log_z, seconds=round(time.perf_counter() - t, 1))
            print(json.dumps(row), flush=True)
            out["batches"].append(row)
            done.append(r)
            save(out, args.json)
        p = estimate.AISResult.pool(done)
        out["pooled"][str(parity)] = dict(log_z=p.log_z, interval=list(p.log_z_interval), ess=p.ess,
                                          runs=p.log_weights.numel(), test_elbo=unnormalised - p.log_z)
        print(json.dumps({"pooled parity": parity, **out["pooled"][str(parity)]}), flush=True)
        save(out, args.json)


if __name__ == "__main__":
    main()
