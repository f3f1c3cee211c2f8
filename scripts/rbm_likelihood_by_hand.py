"""Is the library's trainer the cause of the like-for-like gap?  The likelihood experiment's 784-500
RBM trained on stochastic binarisations by a hand-written loop in bare torch that shares no code with
``harmonium``'s trainer (the textbook PCD-k / CD-k update: hidden probabilities in both phases'
statistics, classical momentum, weight decay on W only), then scored exactly as
``rbm-mnist-likelihood`` scores its models (forward and reverse AIS, the same fixed test draw):

    HARMONIUM_DATA=DIR python scripts/rbm_likelihood_by_hand.py OUT.json            # the preset's PCD-1
    HARMONIUM_DATA=DIR python scripts/rbm_likelihood_by_hand.py OUT.json --cd --k 25 --lr 0.01   # its CD-25

Defaults are the preset's uncentred PCD-1 (v5 in docs/RESULTS.md section 2: -99.59 nats): batch 100,
100 persistent chains, 50 epochs, learning rate 0.001 for 30 epochs then linear decay to 0.0001,
momentum 0.5 for 5 epochs then 0.9, l2 2e-4, W ~ N(0, 0.01^2), visible biases the log-odds of the
training means, hidden biases 0; every batch draws fresh binary digits from the grey levels.
"""
import argparse
import json
import time

import numpy as np
import torch

from harmonium.estimators import RBM
from harmonium.experiments import rbm_mnist_likelihood as lik
from harmonium.experiments._common import Timer, mnist_binarized, preset, scored_digits


def train_by_hand(X: torch.Tensor, *, n_hidden: int, epochs: int, batch: int, rates: list, momenta: list,
                  l2: float, k: int, persistent: bool, seed: int) -> tuple:
    """(W, b, c) of an RBM trained on fresh Bernoulli draws from the grey-level rows ``X``."""
    g = torch.Generator().manual_seed(seed)
    n, d = X.shape
    W = torch.randn(d, n_hidden, generator=g) * 0.01
    p = X.mean(0).clamp(1e-3, 1 - 1e-3)
    b = torch.log(p / (1 - p))
    c = torch.zeros(n_hidden)
    dW, db, dc = torch.zeros_like(W), torch.zeros_like(b), torch.zeros_like(c)
    chains = (torch.rand(batch, d, generator=g) < X[:batch]).to(X.dtype)  # persistent visible states
    for epoch in range(epochs):
        lr, m = rates[epoch], momenta[min(epoch, len(momenta) - 1)]
        order = torch.randperm(n, generator=g)
        for i in range(0, n - batch + 1, batch):
            v0 = (torch.rand(batch, d, generator=g) < X[order[i:i + batch]]).to(X.dtype)
            h0 = torch.sigmoid(v0 @ W + c)
            v = chains if persistent else v0
            hp = torch.sigmoid(v @ W + c) if persistent else h0
            for _ in range(k):
                h = (torch.rand(hp.shape, generator=g) < hp).to(X.dtype)
                v = (torch.rand(batch, d, generator=g) < torch.sigmoid(h @ W.T + b)).to(X.dtype)
                hp = torch.sigmoid(v @ W + c)
            if persistent:
                chains = v
            gW = (v0.T @ h0 - v.T @ hp) / batch - l2 * W
            dW.mul_(m).add_(gW, alpha=lr)
            db.mul_(m).add_(v0.mean(0) - v.mean(0), alpha=lr)
            dc.mul_(m).add_(h0.mean(0) - hp.mean(0), alpha=lr)
            W += dW
            b += db
            c += dc
        print(json.dumps({"epoch": epoch + 1, "lr": lr, "momentum": m,
                          "W_abs_mean": float(W.abs().mean())}), flush=True)
    return W, b, c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--cd", action="store_true", help="CD-k from the data instead of persistent chains")
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--decay-fraction", type=float, default=0.4)
    ap.add_argument("--l2", type=float, default=2e-4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="50 hidden units, 2 epochs, 1,000 betas (smoke test)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = preset(lik.FULL, lik.QUICK, args.quick, {"binarization": "stochastic"}, "cpu")
    epochs = 2 if args.quick else args.epochs
    X_tr, _, _, _, X_te, _, _, _ = mnist_binarized(None, args.quick, binarized=False)
    te, tr = scored_digits(X_te, X_tr, True)
    rates = lik.decaying_rates(epochs, args.lr, max(1, round(epochs * args.decay_fraction)))
    t = time.perf_counter()
    W, b, c = train_by_hand(torch.as_tensor(X_tr), n_hidden=cfg["n_hidden"], epochs=epochs,
                            batch=cfg["batch_size"], rates=rates, momenta=cfg["momentum"], l2=args.l2,
                            k=args.k, persistent=not args.cd, seed=args.seed)
    training_s = time.perf_counter() - t
    rbm = RBM.from_arrays(W.numpy(), b.numpy(), c.numpy())
    timer = Timer()
    res = lik._score(rbm, cfg, X_tr, tr, te, args.seed, timer, "by_hand")
    out = {"run": "by-hand", **vars(args), "epochs": epochs, "training_s": training_s, "times_s": timer.times, **res}
    print(json.dumps(out))
    with open(args.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
