"""How much of each hidden layer a DBM trained on MNIST uses, and how good its features are.

    python scripts/dbm_layer_usage.py MODEL.safetensors [MODEL2 ...] [--rows 5000] [--labels 10000]
        [--data-dir DIR] [--threads 1] [--json OUT]

For every hidden layer of each saved DBM: the mean-field posterior means of the last ``--rows``
validation rows (binarised MNIST, the experiments' 55k / 5k split), the layer's mean activity, the
number of units whose average activity is above 0.05 ("active") and the number that never exceed 0.5
on any row ("never on").  Then a linear probe of the features: logistic regression (C = 1) on the
mean-field means of the first ``--labels`` training rows, test error on the 10,000 test rows, for each
layer alone and for all layers together, against the raw pixels.  A DBM whose top layer has died
(its units off for every digit) has a top-layer probe far worse than the pixels'.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import harmonium as hm
from harmonium.experiments._common import linear_classifier, linear_predict, mnist_binarized


def usage(dbm, X_rows: np.ndarray) -> list[dict]:
    """Per hidden layer: mean activity, units with mean > 0.05, units never above 0.5."""
    rows = []
    for l, q in enumerate(dbm.mean_field(X_rows), start=1):
        q = np.asarray(q)
        rows.append({"layer": l, "units": q.shape[1], "mean_activity": float(q.mean()),
                     "active": int((q.mean(0) > 0.05).sum()), "never_on": int((q.max(0) < 0.5).sum())})
    return rows


def probes(dbm, X_tr, y_tr, X_te, y_te, C: float = 1.0) -> dict[str, float]:
    """Test error (%) of logistic regression on each layer's mean-field means, all layers, and pixels."""
    F_tr = [np.asarray(q) for q in dbm.mean_field(X_tr)]
    F_te = [np.asarray(q) for q in dbm.mean_field(X_te)]
    sets = {f"layer {l}": (a, b) for l, (a, b) in enumerate(zip(F_tr, F_te), start=1)}
    sets["all layers"] = (np.hstack(F_tr), np.hstack(F_te))
    sets["pixels"] = (X_tr, X_te)
    out = {}
    for name, (a, b) in sets.items():
        out[name] = 100.0 * float(np.mean(linear_predict(linear_classifier(a, y_tr, C), b) != y_te))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--labels", type=int, default=10000)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    X_tr, y_tr, X_val, _, X_te, y_te, *_ = mnist_binarized(args.data_dir)
    report = {}
    for path in args.models:
        dbm = hm.load(path)
        r = {"usage": usage(dbm, X_val[-args.rows:]),
             "probe_test_error": probes(dbm, X_tr[:args.labels], y_tr[:args.labels], X_te, y_te)}
        report[path] = r
        print(path)
        for u in r["usage"]:
            print(f"  layer {u['layer']} ({u['units']} units): mean activity {u['mean_activity']:.3f}, "
                  f"active {u['active']}, never on {u['never_on']}")
        print("  logistic regression test error: "
              + ", ".join(f"{k} {v:.2f} %" for k, v in r["probe_test_error"].items()), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
