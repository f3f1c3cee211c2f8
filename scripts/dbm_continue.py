"""Continue the joint training of a saved DBM on MNIST (55,000 training rows, the last 5,000 as
validation; the grey levels for a DBM with ``sample_data``, else the digits thresholded at 0.5, as
``harmonium experiment dbm-mnist`` trained it) for more epochs, with the learning rate decaying geometrically from --lr-start
to --lr-end over them, and save the result; evaluate it with
``harmonium experiment dbm-mnist --config '{"dbm_file": OUT, ...}'``.

    python scripts/dbm_continue.py IN.safetensors OUT.safetensors N_EPOCHS [--lr-start 3e-4]
        [--lr-end 3e-5] [--threads 2]

The DBM keeps its own settings (``sample_data``, ``ema_decay``, momentum, ...); the saved model is
what it fitted (for ``ema_decay > 0`` the average), so training restarts from that.
docs/RESULTS.md section 3 (run 25) used it with the defaults.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import harmonium as hm
from harmonium.experiments._common import mnist_binarized


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("epochs", type=int)
    ap.add_argument("--lr-start", type=float, default=3e-4)
    ap.add_argument("--lr-end", type=float, default=3e-5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dbm = hm.load(args.model)
    X_tr, _, X_val, *_ = mnist_binarized(args.data_dir, False, binarized=not dbm.sample_data)
    done = dbm.epochs
    # the rates of the epochs already trained are never read; the new ones decay geometrically
    lr = [args.lr_end] * done + np.geomspace(args.lr_start, args.lr_end, args.epochs).tolist()
    t = time.perf_counter()
    dbm.set_params(epochs=done + args.epochs, warm_start=True, learning_rate=lr)
    dbm.fit(X_tr, X_val=X_val)
    print(f"continued {args.epochs} epochs in {time.perf_counter() - t:.0f} s", flush=True)
    dbm.save(args.out)


if __name__ == "__main__":
    main()
