"""Shared pieces of the experiments: data, timing, pictures."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..datasets import binarize, load_mnist, validation_split


def mnist_binarized(data_dir=None, quick: bool = False, n_quick: int = 2000):
    """(X_tr, y_tr, X_val, y_val, X_te, y_te, X_all, y_all): MNIST binarised at 0.5, the last 5000
    training rows as validation (quick: the first ``n_quick`` rows split 90/10, 1000 test rows)."""
    ds = load_mnist(data_dir, download=False)
    X = binarize(ds.X_train)
    y = np.asarray(ds.y_train)
    X_te = binarize(ds.X_test)
    y_te = np.asarray(ds.y_test)
    if quick:
        X, y = X[:n_quick], y[:n_quick]
        X_te, y_te = X_te[:1000], y_te[:1000]
        n_val = n_quick // 10
    else:
        n_val = 5000
    X_tr, y_tr, X_val, y_val = validation_split(X, y, n_val=n_val)
    return X_tr, y_tr, X_val, y_val, X_te, y_te, X, y


class Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t


def pictures(rbm, out: Path, seed: int, n_steps: int = 1000) -> None:
    """filters.png (first 100 hidden units' weights) and samples.png (100 samples after n_steps)."""
    from .. import viz

    viz.plot_filters(rbm.components_, shape=(28, 28), path=out / "filters.png", title="RBM filters")
    S = np.asarray(rbm.sample(100, n_steps=n_steps, mean=True))
    viz.plot_samples(S, shape=(28, 28), path=out / "samples.png", title=f"samples after {n_steps} Gibbs sweeps")
