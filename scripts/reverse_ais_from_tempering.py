"""An independent check of an RBM's AIS log Z: reverse AIS started from parallel-tempering samples.

    python scripts/reverse_ais_from_tempering.py MODEL.safetensors [--temperatures 50] [--chains 100]
        [--sweeps 4000] [--betas 50000] [--data-dir DIR] [--threads 1]

Forward AIS (from the data's base-rate model) is a stochastic lower bound on log Z; reverse AIS is a
stochastic upper bound when it starts from exact samples of the model.  Started from plain Gibbs
chains it can miss the same modes as the forward runs; parallel tempering (``--temperatures``
replicas from beta = 1 down to 0, neighbours swapping states) reaches modes a single chain does not.
Agreement of the two bounds then says the estimate can be trusted.  Prints the forward and reverse
estimates, the swap rate, the beta = 1 replica's mean free energy along the way (it should be
stationary), and the test log-probabilities of binarised MNIST under both.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import harmonium as hm
from harmonium import estimate
from harmonium.experiments._common import mnist_binarized
from harmonium.sampling import ParallelTempering


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--temperatures", type=int, default=50)
    ap.add_argument("--chains", type=int, default=100)
    ap.add_argument("--sweeps", type=int, default=4000)
    ap.add_argument("--betas", type=int, default=50000)
    ap.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: HARMONIUM_DATA)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    X_tr, _, _, _, X_te, _, _, _ = mnist_binarized(args.data_dir)
    m = hm.load(args.model).model_.double()
    g = torch.Generator().manual_seed(args.seed)
    pt = ParallelTempering(args.chains, args.temperatures, beta_min=0.0)
    pos = m.start(torch.as_tensor(X_tr[:args.chains], dtype=torch.float64), generator=g)
    t0, rates, trace = time.time(), [], []
    with torch.no_grad():
        for s in range(1, args.sweeps + 1):
            state = pt.negative(m, pos, 1, sample_v=True, sample_h=True, generator=g)
            rates.append(pt.last_swap_rate)
            if s % 500 == 0 or s == args.sweeps:
                trace.append(float(m.free_energy(state.v).mean()))
                print(f"sweep {s}: mean free energy at beta = 1 {trace[-1]:.2f}, swap rate "
                      f"{float(torch.stack(rates[-500:]).mean()):.3f}, {time.time() - t0:.0f} s", flush=True)
    base = torch.as_tensor(X_tr)
    rev = estimate.reverse_ais(m, state.v, betas=args.betas, base_rate=base, random_state=args.seed + 1)
    fwd = estimate.ais(m, n_runs=args.chains, betas=args.betas, base_rate=base, random_state=args.seed + 2)
    X_te = torch.as_tensor(X_te, dtype=torch.float64)
    print(json.dumps({
        "temperatures": args.temperatures, "chains": args.chains, "sweeps": args.sweeps, "betas": args.betas,
        "swap_rate": float(torch.stack(rates).mean()), "free_energy_trace": trace,
        "log_z_forward": fwd.log_z, "forward_interval": list(fwd.log_z_interval), "forward_ess": fwd.ess,
        "log_z_reverse_tempered": rev.log_z, "reverse_interval": list(rev.log_z_interval), "reverse_ess": rev.ess,
        "test_log_likelihood_forward": float(estimate.log_likelihood(m, X_te, fwd).mean()),
        "test_log_likelihood_reverse_tempered": float(estimate.log_likelihood(m, X_te, rev).mean()),
        "seconds": time.time() - t0}, indent=1))


if __name__ == "__main__":
    main()
