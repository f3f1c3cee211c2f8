"""The likelihood experiment's centred PCD-1 RBM trained on ONE fixed stochastic binarisation of the
training rows (seed 1, no fresh draws: ``sample_data=False``) and scored like
``rbm-mnist-likelihood`` with ``binarization="stochastic"`` (test rows drawn with seed 0, the training
draw it was trained on); does training on fresh draws cost or gain likelihood?

    HARMONIUM_DATA=DIR python scripts/rbm_likelihood_fixed_draw.py OUT.json [--threads 1]
"""
import argparse
import json
import time

import torch

from harmonium.experiments import rbm_mnist_likelihood as lik
from harmonium.experiments._common import Timer, mnist_binarized, preset, scored_digits, train_rbm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = preset(lik.FULL, lik.QUICK, False, {"binarization": "stochastic"}, "cpu")
    X_tr, _, X_val, _, X_te, _, _, _ = mnist_binarized(None, False, binarized=False)
    te, tr = scored_digits(X_te, X_tr, True)
    val = scored_digits(X_val, X_val, True)[0]
    t = time.perf_counter()
    rbm = train_rbm({**cfg, **cfg["variants"]["centered_pcd"], "sample_data": False}, tr, val, args.seed, False,
                    ("reconstruction_error", "free_energy_gap"))
    training_s = time.perf_counter() - t
    timer = Timer()
    res = lik._score(rbm, cfg, X_tr, tr, te, args.seed, timer, "centered_pcd")
    out = {"run": "v9-fixed-draw", "variant": "centered_pcd", "seed": args.seed, "training_s": training_s,
           "times_s": timer.times, **res}
    print(json.dumps(out))
    with open(args.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
