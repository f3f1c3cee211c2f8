"""One setting of the likelihood experiment's 784-500 RBM trained on stochastic binarisations
(``rbm-mnist-likelihood`` with ``binarization="stochastic"``: fresh draws from the grey levels in
training, one fixed draw scored by forward and reverse AIS) with other rates, a longer schedule, more
chains, parallel tempering or a CD-k whose k grows:

    HARMONIUM_DATA=DIR python scripts/rbm_likelihood_sweep.py OUT_DIR --epochs 400 --lr 0.0003

The learning rate: ``lr`` for the first epochs, then linear decay to a tenth of it over the last
``decay-fraction`` of them (default 1/4).  The preset's centred PCD-1 is
``--epochs 50 --lr 0.001 --decay-fraction 0.4``; its CD-25 ``--algorithm cd --k 25 --lr 0.01
--decay-fraction 0.4``.  ``--k-ramp``: k grows linearly from 1 to ``k`` over the epochs.  ``--ema-decay D``: the scored
model is the moving average of the parameters (``RBM(ema_decay=D)``); ``--l2`` replaces the preset's weight
decay; ``--optimizer adam``: Adam instead of SGD with momentum.  The visible states: by default
(since session 38) the chains sample every visible state they continue from and CD keeps the means
in its last sweep; ``--sample-v-states`` samples that sweep too (``sample_v_states=True``);
``--visible-means`` passes the means everywhere (``sample_v_states=False``, mean-field chains), as
every run before session 38 that does not name ``--sample-v-states`` did.
"""
import argparse
import json

import torch

from harmonium.experiments import run
from harmonium.experiments.rbm_mnist_likelihood import decaying_rates

VARIANTS = {"centred-pcd": ("centered_pcd", dict(persistent=True, centering=True)),
            "pcd": ("pcd", dict(persistent=True)),
            "cd": ("cd25", dict(persistent=False))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--algorithm", choices=sorted(VARIANTS), default="centred-pcd")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--decay-fraction", type=float, default=0.25)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--k-ramp", action="store_true")
    ap.add_argument("--n-chains", type=int, default=100)
    ap.add_argument("--n-temperatures", type=int, default=1)
    ap.add_argument("--ema-decay", type=float, default=0.0,
                    help="average the parameters over the updates (RBM ema_decay; 0: off)")
    ap.add_argument("--l2", type=float, default=None, help="weight decay (default: the preset's 2e-4)")
    states = ap.add_mutually_exclusive_group()
    states.add_argument("--sample-v-states", action="store_true",
                        help="sample every visible state, CD's last sweep included (RBM sample_v_states=True)")
    states.add_argument("--visible-means", action="store_true",
                        help="pass visible means along the chains, mean-field sweeps (sample_v_states=False; "
                             "the default before session 38)")
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                    help="adam: torch's Adam at --lr (the preset's momentum is then unused)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="the quick preset's model and AIS (a smoke test)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    name, variant = VARIANTS[args.algorithm]
    k = [1 + round((args.k - 1) * e / max(1, args.epochs - 1)) for e in range(args.epochs)] if args.k_ramp else args.k
    variant = dict(variant, k=k, learning_rate=decaying_rates(args.epochs, args.lr,
                                                         max(1, round(args.epochs * args.decay_fraction))))
    if variant["persistent"]:
        variant["n_chains"] = args.n_chains
    if args.n_temperatures > 1:
        variant["n_temperatures"] = args.n_temperatures
    if args.ema_decay:
        variant["ema_decay"] = args.ema_decay
    if args.l2 is not None:
        variant["l2"] = args.l2
    if args.sample_v_states or args.visible_means:
        variant["sample_v_states"] = bool(args.sample_v_states)
    if args.optimizer != "sgd":
        variant["optimizer"] = args.optimizer
    res = run("rbm-mnist-likelihood", args.out, quick=args.quick, seed=args.seed, only=(name,),
              config={"binarization": "stochastic", "epochs": args.epochs, "variants": {name: variant}})
    v = res["results"]["variants"][name]
    print(json.dumps({"out": args.out, **vars(args), **{key: v[key] for key in (
        "test_log_likelihood_ais", "test_log_likelihood_reverse_ais", "train_log_likelihood_ais", "log_z_ais",
        "log_z_gap", "ais_ess", "reverse_ais_ess")}, "times_s": res.get("times_s")}))


if __name__ == "__main__":
    main()
