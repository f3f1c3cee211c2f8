"""The small rows of an MNIST experiment's few-labels table again, from its saved model, with several
draws of the labelled rows: what the presets' ``few_label_repeats`` adds, for a model trained before
it existed (or to try more draws) without training or evaluating anything else.

    python scripts/few_labels_repeats.py rbm-mnist OUT/rbm.safetensors [--labels 1000 100] [--repeats 10]
        [--seed 0] [--threads 1] [--data-dir DIR] [--out DIR]

Each label count is fine-tuned exactly as the experiment's preset does it (``few_label_table``, the
preset's settings), pretrained and from random initialisation; the first draw is the experiment's
own row (the same labelled rows and seed).  Writes ``few-labels-repeats.json`` to --out and prints
mean +- sd per label count.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import harmonium as hm
from harmonium.cli import _few_label_lines
from harmonium.experiments import _jsonable
from harmonium.experiments._common import Timer, few_label_table, mnist_binarized


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", choices=("rbm-mnist", "dbm-mnist"))
    ap.add_argument("model", help="the model file the experiment saved (rbm.safetensors, dbm.safetensors)")
    ap.add_argument("--labels", type=int, nargs="+", default=[1000, 100])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="the experiment's seed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None, help="output folder (default: the model's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.experiment == "rbm-mnist":
        from harmonium.experiments.rbm_mnist import FULL
    else:
        from harmonium.experiments.dbm_mnist import FULL
    cfg = {**FULL, "few_labels": tuple(args.labels), "few_label_repeats": args.repeats, "device": "cpu"}
    model = hm.load(args.model)
    if args.experiment == "rbm-mnist":  # as run_rbm_mnist calls it
        sizes, kw = (cfg["n_hidden"],), {"lr_multipliers": cfg["ft_lr_multipliers"]}
        binarized = cfg["binarized"]
    else:  # as run_dbm_mnist calls it: the classifiers see the grey levels
        sizes, kw = tuple(cfg["n_hidden"]), None
        binarized = not cfg["ft_grey_levels"]
    *_, X_te, y_te, X_all, y_all = mnist_binarized(args.data_dir, binarized=binarized)
    out = Path(args.out or Path(args.model).parent)
    out.mkdir(parents=True, exist_ok=True)
    timer, res, t0 = Timer(), {}, time.perf_counter()
    few_label_table(model, sizes, cfg, X_all, y_all, X_te, y_te, args.seed, timer, out, res, pretrained_kw=kw)
    record = {"experiment": args.experiment, "model": args.model, "seed": args.seed, "config": cfg,
              "results": res, "times_s": timer.times, "wall_time_s": time.perf_counter() - t0,
              "torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}
    (out / "few-labels-repeats.json").write_text(json.dumps(_jsonable(record), indent=2) + "\n")
    print("\n".join(_few_label_lines(res)))
    for row in res["few_labels"]:
        if "repeats" in row:
            print(f"  {row['n_labels']} labels: gain {row['gain']:+.2f} +- {row['gain_sd']:.2f} points, "
                  f"positive in {row['draws_with_positive_gain']} of {row['repeats']} draws")


if __name__ == "__main__":
    main()
