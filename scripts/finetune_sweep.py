"""Fine-tune a saved RBM, DBN or DBM on all 60,000 MNIST labels with several settings, as the
dbm-mnist preset's 60k few-labels row does (grey levels, 55,000 + 5,000 stratified validation rows, Adam
1e-3, batch 128, up to 200 epochs, patience 25, learning rate halved after 8 epochs without
improvement, then trained again on all 60,000 rows for the epochs chosen, seed 0), and print each
setting's best validation accuracy and test error.

    python scripts/finetune_sweep.py MODEL.safetensors 'JSON list of FineTunedClassifier keyword dicts'
        [--data-dir DIR] [--threads 1] [--jsonl OUT]

e.g. '[{"dropout": 0.2}, {"dropout": 0.5, "input_dropout": 0.2}]'.  Choose among the settings by the
validation accuracy: the test error is printed to be reported, not to choose with.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import harmonium as hm
from harmonium.experiments._common import mnist_binarized
from harmonium.experiments.dbm_mnist import FULL
from harmonium.finetune import FineTunedClassifier

# the dbm-mnist preset's fine-tuning settings (its 60k row), so the two cannot drift apart
DEFAULTS = dict(learning_rate=FULL["ft_lr"], epochs=FULL["ft_epochs"], patience=FULL["ft_patience"],
                lr_patience=FULL["ft_lr_patience"], batch_size=FULL["ft_batch_size"], refit=FULL["ft_refit"],
                validation_fraction=5000 / 60000, random_state=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("settings", type=json.loads)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jsonl", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = hm.load(args.model)
    *_, X_te, y_te, X_all, y_all = mnist_binarized(args.data_dir, binarized=False)
    for setting in args.settings:
        t = time.perf_counter()
        clf = FineTunedClassifier(model, **{**DEFAULTS, **setting}).fit(X_all, y_all)
        h = clf.history_
        # no validation history with early_stopping=False (every row trained on): those fields are None
        val = (dict(best_val_accuracy=max(h["val_accuracy"]), val_loss_at_best=h["val_loss"][clf.best_epoch_ - 1],
                    min_val_loss=min(h["val_loss"])) if "val_accuracy" in h
               else dict.fromkeys(("best_val_accuracy", "val_loss_at_best", "min_val_loss")))
        row = dict(model=args.model, setting=setting, **val,
                   test_error=100.0 * float(np.mean(clf.predict(X_te) != y_te)), best_epoch=int(clf.best_epoch_),
                   epochs_run=int(clf.n_iter_), seconds=round(time.perf_counter() - t, 1))
        print(json.dumps(row), flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
