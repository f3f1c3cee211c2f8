"""One setting of the likelihood experiment's centred PCD-1 RBM trained on stochastic binarisations
(``rbm-mnist-likelihood`` with ``binarization="stochastic"``, variant ``centered_pcd``), with the
preset's learning rates scaled, a longer schedule, more chains or parallel tempering:

    HARMONIUM_DATA=DIR python scripts/rbm_likelihood_sweep.py OUT_DIR --epochs 400 --lr-scale 0.3

The schedule: ``lr-scale`` x 0.001 for the first 3/4 of the epochs, then linear decay to a tenth of it
(the preset's centred PCD-1 is 0.001 for 30 epochs, then decay to 0.0001 over 20).
"""
import argparse
import json

import torch

from harmonium.experiments import run


def schedule(epochs: int, start: float) -> list[float]:
    decay = max(1, epochs // 4)
    flat = epochs - decay
    return [start] * flat + [round(start - 0.9 * start * i / decay, 10) for i in range(1, decay + 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--lr-scale", type=float, default=1.0)
    ap.add_argument("--n-chains", type=int, default=100)
    ap.add_argument("--n-temperatures", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    variant = dict(k=1, persistent=True, n_chains=args.n_chains, centering=True,
                   learning_rate=schedule(args.epochs, 0.001 * args.lr_scale))
    if args.n_temperatures > 1:
        variant["n_temperatures"] = args.n_temperatures
    res = run("rbm-mnist-likelihood", args.out, seed=args.seed, only=("centered_pcd",),
              config={"binarization": "stochastic", "epochs": args.epochs,
                      "variants": {"centered_pcd": variant}})
    v = res["results"]["variants"]["centered_pcd"]
    print(json.dumps({"out": args.out, **vars(args), **{k: v[k] for k in (
        "test_log_likelihood_ais", "test_log_likelihood_reverse_ais", "train_log_likelihood_ais", "log_z_gap",
        "ais_ess", "reverse_ais_ess")}, "times_s": res.get("times_s")}))


if __name__ == "__main__":
    main()
