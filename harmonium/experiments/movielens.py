"""RBMs for collaborative filtering (Salakhutdinov, Mnih & Hinton 2007) on MovieLens 100K, the five
official splits u1..u5: test RMSE / MAE of the user-based RatingsRBM (U-RBM), the item-based one
(I-RBM) and baselines computed in the same run (the training mean; global mean + user and item
biases), and the like/dislike model's test error (the PyTorch RBM tutorial's "MAE", about 0.25).

Project goals (issue 8): mean RMSE <= 0.93 over u1..u5, binary MAE <= 0.22.  docs/MOVIELENS.md
records full runs (``benchmarks/movielens.py`` adds scikit-surprise's SVD when it is installed).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ._common import Timer, preset, write_partial

# chosen on a validation split of u1.base (10 % of each user's ratings; docs/MOVIELENS.md lists
# what was tried), then applied unchanged to every fold
MODELS = {
    "U-RBM": dict(n_hidden=100, learning_rate=0.02, l2=0.01, epochs=40, batch_size=64, momentum=0.9),
    "I-RBM": dict(n_hidden=100, item_based=True, learning_rate=0.05, l2=0.01, epochs=40, batch_size=64,
                  momentum=0.9),
    "binary": dict(n_hidden=100, binary=True, learning_rate=0.05, l2=0.01, epochs=20, batch_size=64,
                   momentum=0.9),
}
BIAS = dict(l2_user=10.0, l2_item=25.0, n_sweeps=10)
FULL = dict(folds=(1, 2, 3, 4, 5), models=MODELS, bias=BIAS)
QUICK = dict(folds=(1,), bias=BIAS,
             models={k: dict(v, n_hidden=20, epochs=3) for k, v in MODELS.items()})


def rmse_mae(pred, truth) -> tuple[float, float]:
    err = np.asarray(pred, np.float64) - np.asarray(truth, np.float64)
    return float(np.sqrt(np.mean(err ** 2))), float(np.mean(np.abs(err)))


def evaluate_fold(train: np.ndarray, test: np.ndarray, models: dict, bias: dict, random_state: int,
                  verbose: bool = False) -> dict:
    """Every model and baseline on one split: {name: {"rmse", "mae", "seconds"}} (the binary model:
    {"binary_mae", "p_like_rmse", "seconds"}, next to "always like")."""
    from ..collaborative import RatingsRBM, bias_baseline

    truth = test[:, 2].astype(np.float64)
    row: dict[str, dict] = {}
    t = time.perf_counter()
    mean = float(train[:, 2].mean())
    rmse, mae = rmse_mae(np.full(len(test), mean), truth)
    row["global mean"] = {"rmse": rmse, "mae": mae, "seconds": time.perf_counter() - t}
    t = time.perf_counter()
    _, pred = bias_baseline(train, test, return_predictions=True, **bias)
    rmse, mae = rmse_mae(pred, truth)
    row["bias"] = {"rmse": rmse, "mae": mae, "seconds": time.perf_counter() - t}
    like = (test[:, 2] >= 3).astype(np.float64)
    row["always like"] = {"binary_mae": float(np.mean(1.0 - like))}
    for name, cfg in models.items():
        t = time.perf_counter()
        m = RatingsRBM(random_state=random_state, verbose=int(verbose), **cfg).fit(train)
        secs = time.perf_counter() - t
        if cfg.get("binary"):
            row[name] = {"binary_mae": m.binary_mae(test), "p_like_rmse": m.score(test), "seconds": secs}
        else:
            rmse, mae = rmse_mae(m.predict(test), truth)
            row[name] = {"rmse": rmse, "mae": mae, "seconds": secs}
    return row


def summarize(folds: list[dict]) -> dict:
    """Mean, standard deviation (ddof=1; 0 for one fold), min and max over folds of every number."""
    out: dict[str, dict] = {}
    for name in folds[0]:
        out[name] = {}
        for key in folds[0][name]:
            v = np.array([f[name][key] for f in folds], np.float64)
            out[name][key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                              "min": float(v.min()), "max": float(v.max())}
    return out


def run_movielens(out_dir, quick: bool = False, data_dir=None, seed: int = 0, *, config: dict | None = None,
                  device: str = "cpu") -> dict:
    """All models on MovieLens 100K u1..u5 (quick: u1 only, 20 hidden units, 3 epochs).  The RBM of
    fold k is seeded with ``seed + k``.  ``config``: entries replacing the preset's; ``device``: the
    torch device of the models."""
    from ..datasets import load_movielens

    out = Path(out_dir)
    cfg = preset(FULL, QUICK, quick, config, device)
    timer = Timer()
    folds = []
    for fold in cfg["folds"]:
        with timer(f"u{fold}"):
            train, test = load_movielens("100k", fold=fold, data_dir=data_dir, download=False)
            row = evaluate_fold(train, test, {k: dict(v, device=cfg["device"]) for k, v in cfg["models"].items()},
                                cfg["bias"], seed + fold)
        folds.append({"fold": f"u{fold}", "n_train": len(train), "n_test": len(test), **row})
        write_partial(out, {"folds": folds})
    names = [k for k in folds[0] if k not in ("fold", "n_train", "n_test")]
    summary = summarize([{k: f[k] for k in names} for f in folds])
    return {
        "config": {"data": "MovieLens 100K", "folds": [f"u{k}" for k in cfg["folds"]],
                   "models": cfg["models"], "bias": cfg["bias"], "seeds": "seed + fold number",
                   "binary": "like = rating >= 3; binary_mae = fraction of test ratings whose like/dislike "
                             "is predicted wrongly by p(like) >= 0.5"},
        "results": {"summary": summary, "folds": folds,
                    "goals": {"rmse": 0.93, "binary_mae": 0.22}},
        "times_s": timer.times,
    }
