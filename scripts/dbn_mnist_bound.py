"""A two-layer DBN (784-500-2000) on MNIST binarised at 0.5: the first RBM is the likelihood
experiment's centred PCD-1 784-500 model (its preset, seed 0), the second a centred PCD-1 500-2000 RBM
trained on the first one's hidden means with the same schedule.  Prints and writes as JSON: the first
RBM's AIS test log-probability, and the DBN's variational lower bound on the test log-probability
(``DBN.score_samples``: 100 recognition passes per digit, the top RBM's log Z by forward AIS, checked
by reverse AIS), as Salakhutdinov & Murray (2008) compare an RBM with the DBN built on it.

    HARMONIUM_DATA=DIR python scripts/dbn_mnist_bound.py OUT.json [--epochs 50] [--threads 1] [--quick]
        [--sample-hidden] [--top-from-transpose] [--top-rate-scale 1.0]

``--sample-hidden`` trains the second RBM on fresh binary hidden states drawn from the first one's
posterior at every use (``sample_data=True``), the states the lower bound scores it on, instead of
on the hidden means.  ``--top-from-transpose`` starts the second RBM where the greedy argument of
Hinton, Osindero & Teh (2006) starts it: its first 784 hidden units are the first RBM's visible units
(W transposed, the biases swapped, in natural parameters) and the other 1,216 have zero weights and
biases, so that before training the DBN is the first RBM and its bound equals the RBM's
log-probability (checked on the first 1,000 test digits, with log Z_top = log Z_RBM + 1,216 log 2, log Z_RBM
in natural parameters);
training it on the first RBM's hidden states can then only raise the bound, if it raises their
likelihood.
"""
import argparse
import copy
import json
import math
import time

import numpy as np
import torch

from harmonium import DBN, RBM, estimate
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
    ap.add_argument("--top-from-transpose", action="store_true",
                    help="start the second RBM at the first one transposed, padded with idle units")
    ap.add_argument("--top-rate-scale", type=float, default=1.0,
                    help="multiply the second RBM's learning rates by this")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    X_tr, _, X_val, _, X_te, _, _, _ = mnist_binarized(quick=args.quick)
    variant = FULL["variants"]["centered_pcd"]
    layer = dict(epochs=args.epochs, batch_size=FULL["batch_size"], momentum=FULL["momentum"], l2=FULL["l2"],
                 k=1, persistent=True, n_chains=variant["n_chains"], centering=True,
                 learning_rate=decaying_rates(args.epochs, variant["learning_rate"][0], round(args.epochs * 0.4)),
                 metrics=("reconstruction_error",), verbose=1)
    sizes = ((50, 800) if args.top_from_transpose else (50, 100)) if args.quick else (500, 2000)
    if args.quick:
        layer.update(epochs=2, learning_rate=0.01)
    rate = layer["learning_rate"]
    top_rates = [r * args.top_rate_scale for r in rate] if isinstance(rate, list) else rate * args.top_rate_scale
    params = [layer, dict(layer, sample_data=args.sample_hidden, learning_rate=top_rates)]
    times = {}
    test = torch.as_tensor(X_te)
    base = torch.as_tensor(X_tr)
    extra = {}
    t = time.perf_counter()
    if not args.top_from_transpose:
        bottom, top = DBN(n_hidden=sizes, rbm_params=params, random_state=args.seed).fit(X_tr, X_val=X_val).rbms_
        times["training"] = time.perf_counter() - t
    else:  # the same layers as the DBN's, the second started at the first transposed
        bottom = RBM(n_hidden=sizes[0], random_state=args.seed, **params[0]).fit(X_tr, X_val=X_val)
        times["training"] = time.perf_counter() - t
    t = time.perf_counter()
    rbm_ais = estimate.ais(bottom, n_runs=100, betas=args.betas, base_rate=base, random_state=args.seed)
    rbm_ll_rows = estimate.log_likelihood(bottom, test, rbm_ais)
    rbm_ll = float(rbm_ll_rows.mean())
    times["rbm_ais"] = time.perf_counter() - t
    with torch.no_grad():
        up = bottom.model_.hidden_mean(base)
    if args.top_from_transpose:
        t = time.perf_counter()
        centred = copy.deepcopy(bottom.model_).to(torch.float64)
        natural = copy.deepcopy(centred)
        natural.set_offsets(None, None)
        W = natural.W.detach().cpu().numpy()
        idle = sizes[1] - W.shape[0]
        start = dict(W_init=np.hstack([W.T, np.zeros((W.shape[1], idle))]),
                     vb_init=natural.hidden.bias.detach().cpu().numpy(),
                     hb_init=np.concatenate([natural.visible.bias.detach().cpu().numpy(), np.zeros(idle)]))
        # dropping the offsets moves the energy by mu^T W lambda (RBMModel.set_offsets), log Z by minus that
        with torch.no_grad():
            shift = -float(centred.visible_offset @ centred.W @ centred.hidden_offset) if centred.centered else 0.0
        check = estimate.dbn_lower_bound([bottom, RBM.from_arrays(start["W_init"], start["vb_init"], start["hb_init"])],
                                         test[:1000], rbm_ais.log_z + shift + idle * math.log(2),
                                         n_samples=2, random_state=args.seed)
        extra["transposed_top_bound_minus_rbm_log_prob_max_abs"] = float((check - rbm_ll_rows[:1000]).abs().max())
        print("bound of the DBN at its start minus the RBM's log-probability, largest |difference| over 1,000 "
              f"test digits: {extra['transposed_top_bound_minus_rbm_log_prob_max_abs']:.3g} nats", flush=True)
        with torch.no_grad():
            up_val = bottom.model_.hidden_mean(torch.as_tensor(X_val))
        top = RBM(n_hidden=sizes[1], random_state=args.seed + 1, **params[1], **start).fit(up, X_val=up_val)
        times["training"] += time.perf_counter() - t
    t = time.perf_counter()
    top_ais = estimate.ais(top, n_runs=100, betas=args.betas, base_rate=up, random_state=args.seed)
    samples = torch.as_tensor(top.sample(100, n_steps=10000 if not args.quick else 100))
    top_rev = estimate.reverse_ais(top, samples, betas=args.betas, base_rate=up, random_state=args.seed + 1)
    times["top_ais"] = time.perf_counter() - t
    t = time.perf_counter()
    bound = estimate.dbn_lower_bound([bottom, top], test, top_ais.log_z, n_samples=args.samples,
                                     random_state=args.seed).numpy()  # as DBN.score_samples computes it
    bound_rev = np.asarray(bound) - (top_rev.log_z - top_ais.log_z)
    times["bound"] = time.perf_counter() - t
    res = {"sizes": [784, *sizes], "epochs": layer["epochs"], "seed": args.seed, "betas": args.betas,
           "recognition_samples": args.samples, "data": "MNIST binarised at 0.5", "n_test": len(X_te),
           "second_layer_data": "binary states drawn from q(h|v)" if args.sample_hidden else "hidden means",
           "second_layer_start": "first RBM transposed, idle units" if args.top_from_transpose else "random",
           "second_layer_rate_scale": args.top_rate_scale,
           **extra,
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
