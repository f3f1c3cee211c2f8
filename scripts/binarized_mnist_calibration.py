"""Is our stochastically binarised MNIST as hard as the papers'?  Two models whose likelihood is exact,
fitted and scored on our data as the likelihood experiment scores its RBMs, beside their published
numbers on Salakhutdinov & Murray's (2008) binarised MNIST (Larochelle & Murray 2011, table 2:
a fully visible sigmoid belief net -97.45 nats, a mixture of 500 products of Bernoullis -137.64).

* FVSBN: p(x) = prod_i sigmoid(b_i + sum_{j<i} W_ij x_j)^x_i (1 - ...)^(1 - x_i), fitted by full-batch
  L-BFGS with an L2 penalty chosen on the validation rows (largest penalty first, each fit starting
  from the last).
* MoB: p(x) = sum_k pi_k prod_i mu_ki^x_i (1 - mu_ki)^(1 - x_i), fitted by EM from random training
  digits, the means kept in [1e-4, 1 - 1e-4]; the iteration with the best validation likelihood is kept.

Training rows: one fixed stochastic draw of the first 55,000 (seed 1, ``scored_digits``); validation:
the last 5,000 drawn with seed 2; test: the 10,000 drawn with seed 0 (the draw every RBM and DBM here
is scored on).  ``--binarization threshold`` fits and scores the digits binarised at 0.5 instead.
Also printed: the mean over test digits of sum_i H(g_i), the entropy of the binarisation noise given
the grey levels g (zero when thresholded).

    HARMONIUM_DATA=DIR python scripts/binarized_mnist_calibration.py OUT.json [--binarization threshold]
"""
import argparse
import json
import math
import time

import numpy as np
import torch
from scipy.special import entr

from harmonium.datasets import binarize_stochastic
from harmonium.experiments import machine_info
from harmonium.experiments._common import mnist_binarized, scored_digits

PUBLISHED = {"fvsbn": -97.45, "mob_500": -137.64}


def fvsbn_log_prob(W, b, mask, X):
    """log p(x) of every row under the FVSBN: a sum of 784 logistic log-likelihoods."""
    logits = X @ (W * mask).T + b
    return -torch.nn.functional.binary_cross_entropy_with_logits(logits, X, reduction="none").sum(1)


def fit_fvsbn(tr, val, l2s, max_iter, log):
    d = tr.shape[1]
    mask = torch.tril(torch.ones(d, d, dtype=tr.dtype), diagonal=-1)
    W = torch.zeros(d, d, dtype=tr.dtype, requires_grad=True)
    p = tr.mean(0).clamp(1e-4, 1 - 1e-4)
    b = torch.log(p / (1 - p)).clone().requires_grad_(True)
    best = None
    rows = []
    for l2 in l2s:
        opt = torch.optim.LBFGS([W, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-6, tolerance_change=1e-9)

        def closure():
            opt.zero_grad()
            loss = -fvsbn_log_prob(W, b, mask, tr).mean() + 0.5 * l2 * (W * mask).pow(2).sum()
            loss.backward()
            return loss

        t = time.perf_counter()
        opt.step(closure)
        with torch.no_grad():
            row = {"l2": l2, "train": float(fvsbn_log_prob(W, b, mask, tr).mean()),
                   "val": float(fvsbn_log_prob(W, b, mask, val).mean()), "seconds": time.perf_counter() - t,
                   "evaluations": opt.state[W]["func_evals"]}
        log(f"FVSBN l2 {l2:g}: train {row['train']:.2f}  val {row['val']:.2f}  "
            f"({row['evaluations']} evaluations, {row['seconds']:.0f} s)")
        rows.append(row)
        if best is None or row["val"] > best[0]["val"]:
            best = (row, W.detach().clone(), b.detach().clone())
    return best, mask, rows


def mob_log_prob(log_pi, mu, X):
    """log p(x) of every row under the mixture, and the log joint of every (row, component)."""
    joint = X @ (torch.log(mu) - torch.log1p(-mu)).T + torch.log1p(-mu).sum(1) + log_pi
    return torch.logsumexp(joint, 1), joint


def fit_mob(tr, val, k, iters, seed, log):
    g = torch.Generator().manual_seed(seed)
    mu = (0.25 + 0.5 * tr[torch.randperm(tr.shape[0], generator=g)[:k]]).clamp(1e-4, 1 - 1e-4)
    log_pi = torch.full((k,), -math.log(k), dtype=tr.dtype)
    best, rows = None, []
    for it in range(1, iters + 1):
        lp, joint = mob_log_prob(log_pi, mu, tr)
        r = torch.exp(joint - lp[:, None])
        n_k = r.sum(0)
        mu = ((r.T @ tr) / n_k.clamp_min(1e-12)[:, None]).clamp(1e-4, 1 - 1e-4)
        log_pi = torch.log(n_k.clamp_min(1e-12) / tr.shape[0])
        row = {"iteration": it, "train": float(lp.mean()), "val": float(mob_log_prob(log_pi, mu, val)[0].mean())}
        rows.append(row)
        if it % 10 == 0:
            log(f"MoB-{k} EM iteration {it}: train (before the step) {row['train']:.2f}  val {row['val']:.2f}")
        if best is None or row["val"] > best[0]["val"]:
            best = (row, log_pi.clone(), mu.clone())
    return best, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--binarization", choices=("stochastic", "threshold"), default="stochastic")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--l2", type=float, nargs="+", default=[1e-3, 3e-4, 1e-4, 3e-5, 1e-5])
    ap.add_argument("--lbfgs-iterations", type=int, default=150)
    ap.add_argument("--mob-components", type=int, default=500)
    ap.add_argument("--em-iterations", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    stochastic = args.binarization == "stochastic"
    X_tr, _, X_val, _, X_te, _, _, _ = mnist_binarized(None, False, binarized=not stochastic)
    te, tr = scored_digits(X_te, X_tr, stochastic)
    val = binarize_stochastic(X_val, 2) if stochastic else X_val
    g = np.asarray(X_te, dtype=np.float64)
    noise_entropy = float((entr(g) + entr(1 - g)).sum(1).mean()) if stochastic else 0.0
    tr, val, te = (torch.as_tensor(a, dtype=torch.float32) for a in (tr, val, te))

    def log(msg):
        print(msg, flush=True)

    log(f"binarisation noise of the test draw: {noise_entropy:.2f} nats per digit on average")
    t = time.perf_counter()
    (f_best, W, b), mask, f_rows = fit_fvsbn(tr, val, args.l2, args.lbfgs_iterations, log)
    with torch.no_grad():
        f_test = float(fvsbn_log_prob(W, b, mask, te).mean())
    fvsbn_s = time.perf_counter() - t
    log(f"FVSBN (l2 {f_best['l2']:g}): test {f_test:.2f} nats (published on S&M's binarised MNIST: -97.45)")
    t = time.perf_counter()
    (m_best, log_pi, mu), m_rows = fit_mob(tr, val, args.mob_components, args.em_iterations, args.seed, log)
    m_test = float(mob_log_prob(log_pi, mu, te)[0].mean())
    mob_s = time.perf_counter() - t
    log(f"MoB-{args.mob_components} (EM iteration {m_best['iteration']}): test {m_test:.2f} nats "
        "(published: -137.64 with 500 components)")
    out = {"binarization": args.binarization, "data": "MNIST, first 55,000 training rows (one fixed draw, seed 1), "
           "last 5,000 as validation (seed 2), 10,000 test rows (seed 0)" if stochastic else "MNIST binarised at 0.5",
           "test_binarisation_noise_entropy_nats": noise_entropy,
           "fvsbn": {"test_log_prob": f_test, "chosen": f_best, "path": f_rows, "seconds": fvsbn_s,
                     "published": PUBLISHED["fvsbn"]},
           "mob": {"components": args.mob_components, "test_log_prob": m_test, "chosen": m_best,
                   "path": m_rows, "seconds": mob_s, "published": PUBLISHED["mob_500"]},
           "threads": args.threads, "torch": torch.__version__, **machine_info()}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
