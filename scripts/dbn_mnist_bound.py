"""A two-layer DBN (784-500-2000) on MNIST binarised at 0.5: the first RBM is the likelihood
experiment's centred PCD-1 784-500 model (its preset, seed 0), the second a centred PCD-1 500-2000 RBM
trained on the first one's hidden means with the same schedule.  Prints and writes as JSON: the first
RBM's AIS test log-probability, and the DBN's variational lower bound on the test log-probability
(``DBN.score_samples``: 100 recognition passes per digit, the top RBM's log Z by forward AIS, checked
by reverse AIS), as Salakhutdinov & Murray (2008) compare an RBM with the DBN built on it.

    HARMONIUM_DATA=DIR python scripts/dbn_mnist_bound.py OUT.json [--epochs 50] [--threads 1] [--quick]
        [--sample-hidden]

``--sample-hidden`` trains the second RBM on fresh binary hidden states drawn from the first one's
posterior at every use (``sample_data=True``), the states the lower bound scores it on, instead of
on the hidden means.
"""
import argparse
import json
import time

import numpy as np
import torch

from harmonium import DBN, estimate
from harmonium.experiments import machine_info
from harmonium.experiments._common import mnist_binarized
from harmonium.experiments.rbm_mnist_likelihood import FULL, decaying_rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=FULL["epochs"])
    ap.add_argument("--betas", type=int, default=FULL["betas"])
    ap.add_argument("--samples", type=int, default=100, help="recognition passes per test digit")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="2,000 digits, 50 and 100 hidden units, 2 epochs")
    ap.add_argument("--sample-hidden", action="store_true",
                    help="train the second RBM on binary states drawn from the first one's posterior")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    X_tr, _, X_val, _, X_te, _, _, _ = mnist_binarized(quick=args.quick)
    variant = FULL["variants"]["centered_pcd"]
    layer = dict(epochs=args.epochs, batch_size=FULL["batch_size"], momentum=FULL["momentum"], l2=FULL["l2"],
                 k=1, persistent=True, n_chains=variant["n_chains"], centering=True,
                 learning_rate=decaying_rates(args.epochs, variant["learning_rate"][0], round(args.epochs * 0.4)),
                 metrics=("reconstruction_error",), verbose=1)
    sizes = (50, 100) if args.quick else (500, 2000)
    if args.quick:
        layer.update(epochs=2, learning_rate=0.01)
    params = [layer, dict(layer, sample_data=args.sample_hidden)]
    times = {}
    t = time.perf_counter()
    dbn = DBN(n_hidden=sizes, rbm_params=params, random_state=args.seed).fit(X_tr, X_val=X_val)
    times["training"] = time.perf_counter() - t
    bottom, top = dbn.rbms_
    test = torch.as_tensor(X_te)
    base = torch.as_tensor(X_tr)
    t = time.perf_counter()
    rbm_ais = estimate.ais(bottom, n_runs=100, betas=args.betas, base_rate=base, random_state=args.seed)
    rbm_ll = float(estimate.log_likelihood(bottom, test, rbm_ais).mean())
    times["rbm_ais"] = time.perf_counter() - t
    t = time.perf_counter()
    with torch.no_grad():
        up = bottom.model_.hidden_mean(base)
    top_ais = estimate.ais(top, n_runs=100, betas=args.betas, base_rate=up, random_state=args.seed)
    samples = torch.as_tensor(top.sample(100, n_steps=10000 if not args.quick else 100))
    top_rev = estimate.reverse_ais(top, samples, betas=args.betas, base_rate=up, random_state=args.seed + 1)
    times["top_ais"] = time.perf_counter() - t
    t = time.perf_counter()
    bound = dbn.score_samples(X_te, log_z=top_ais.log_z, n_samples=args.samples)
    bound_rev = np.asarray(bound) - (top_rev.log_z - top_ais.log_z)
    times["bound"] = time.perf_counter() - t
    res = {"sizes": [784, *sizes], "epochs": layer["epochs"], "seed": args.seed, "betas": args.betas,
           "recognition_samples": args.samples, "data": "MNIST binarised at 0.5", "n_test": len(X_te),
           "second_layer_data": "binary states drawn from q(h|v)" if args.sample_hidden else "hidden means",
           "rbm_test_log_likelihood_ais": rbm_ll, "rbm_log_z_ais": rbm_ais.log_z, "rbm_ais_ess": rbm_ais.ess,
           "top_log_z_ais": top_ais.log_z, "top_log_z_ais_interval": list(top_ais.log_z_interval),
           "top_ais_ess": top_ais.ess, "top_log_z_reverse_ais": top_rev.log_z, "top_reverse_ais_ess": top_rev.ess,
           "dbn_test_lower_bound_ais": float(np.mean(bound)),
           "dbn_test_lower_bound_reverse_ais": float(np.mean(bound_rev)),
           "dbn_lower_bound_sd_over_digits": float(np.std(bound)),
           "times_s": times, "threads": args.threads, **machine_info()}
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
