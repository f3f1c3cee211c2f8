"""Shared pieces of the experiments: data, timing, pictures."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..datasets import binarize, binarize_stochastic, load_mnist, validation_split


class ConfigError(ValueError):
    """A configuration entry the experiment's preset does not have, or a device that cannot be used."""


def preset(full: dict, quick_cfg: dict, quick: bool, config: dict | None, device: str) -> dict:
    """The experiment's configuration: its full or quick preset with ``config``'s entries replacing the
    preset's (an unknown key is an error: a typo must not run the preset silently), and the torch
    ``device`` every model and classifier of the run is put on."""
    import torch

    cfg = dict(quick_cfg if quick else full)
    unknown = sorted(set(config or {}) - set(cfg))
    if unknown:
        raise ConfigError(f"unknown configuration keys {unknown}; the preset has {sorted(cfg)}")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise ConfigError(f"device {device!r} cannot be used here: {e}") from None
    cfg = {**cfg, **(config or {}), "device": str(device)}
    if "few_labels" in cfg:
        _few_label_repeats(cfg)  # a bad value fails now, not after hours of training
    return cfg


def mnist_binarized(data_dir=None, quick: bool = False, n_quick: int = 2000, binarized: bool = True):
    """(X_tr, y_tr, X_val, y_val, X_te, y_te, X_all, y_all): MNIST binarised at 0.5 (or the grey
    levels in [0, 1] with ``binarized=False``), the last 5000 training rows as validation (quick: the
    first ``n_quick`` rows split 90/10, 1000 test rows)."""
    ds = load_mnist(data_dir, download=False)
    prep = binarize if binarized else (lambda a: np.array(a, dtype=np.float32))  # a writable copy
    X = prep(ds.X_train)
    y = np.asarray(ds.y_train)
    X_te = prep(ds.X_test)
    y_te = np.asarray(ds.y_test)
    if quick:
        X, y = X[:n_quick], y[:n_quick]
        X_te, y_te = X_te[:1000], y_te[:1000]
        n_val = n_quick // 10
    else:
        n_val = 5000
    X_tr, y_tr, X_val, y_val = validation_split(X, y, n_val=n_val)
    return X_tr, y_tr, X_val, y_val, X_te, y_te, X, y


def stochastic_binarization(cfg: dict) -> bool:
    """Whether ``cfg["binarization"]`` is ``"stochastic"`` (train on the grey levels as the visible
    means, drawing fresh binary digits at every use, ``sample_data``, as Salakhutdinov & Hinton's code
    does; score on one fixed stochastic binarisation, :func:`scored_digits`) rather than ``"threshold"``
    (digits binarised at 0.5 for training and scoring).  Anything else is refused."""
    if cfg["binarization"] not in ("threshold", "stochastic"):
        raise ValueError(f"binarization must be 'threshold' or 'stochastic', got {cfg['binarization']!r}")
    return cfg["binarization"] == "stochastic"


def scored_digits(X_te, X_tr, stochastic: bool):
    """The test and training digits a likelihood is taken on: as they are, or (``stochastic``) one
    fixed stochastic binarisation of the grey levels, seed 0 for the test rows and 1 for the training
    rows (the paper's likelihoods are on such a draw; the draw of a prefix of the rows is the prefix
    of the draw)."""
    if not stochastic:
        return X_te, X_tr
    return binarize_stochastic(X_te, 0), binarize_stochastic(X_tr, 1)


def data_description(stochastic: bool) -> str:
    return ("MNIST grey levels: training draws fresh binary digits at every use, the likelihoods one fixed "
            "stochastic binarisation") if stochastic else "MNIST binarised at 0.5"


def train_rbm(cfg: dict, X_tr, X_val, seed: int, quick: bool, metrics: tuple):
    """The experiments' RBM: hyperparameters from ``cfg``, trained with a validation split."""
    from ..estimators import RBM

    optional = {key: cfg[key] for key in ("sample_v_states", "sparsity_target", "sparsity_cost", "sparsity_damping",
                                          "n_chains", "n_temperatures", "centering", "W_init", "hb_init",
                                          "sample_data", "ema_decay", "optimizer") if key in cfg}
    if cfg.get("n_temperatures", 1) > 1:
        metrics = (*metrics, "swap_rate")
    rbm = RBM(cfg["n_hidden"], learning_rate=cfg["learning_rate"], momentum=cfg["momentum"],
              epochs=cfg["epochs"], batch_size=cfg["batch_size"], k=cfg["k"], persistent=cfg["persistent"],
              l2=cfg["l2"], metrics=metrics, random_state=seed, verbose=0 if quick else 1,
              device=cfg.get("device", "cpu"), **optional)
    return rbm.fit(X_tr, X_val=X_val)


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


def write_partial(out: Path, data: dict) -> None:
    """Write ``out/partial.json`` (the numbers so far) so that an interrupted run leaves them."""
    import json

    from . import _jsonable

    (out / "partial.json").write_text(json.dumps(_jsonable(data), indent=2) + "\n")


def linear_classifier(F_tr, y_tr, C: float, loss: str = "logistic", init=None, max_iter: int = 200,
                      device: str = "cpu"):
    """A linear classifier trained by full-batch L-BFGS in torch (float32) on the objective of
    scikit-learn's ``LogisticRegression(C)`` (multinomial cross-entropy summed over rows + ||W||^2 / (2C),
    intercept not penalised) or of ``LinearSVC(C)`` (one-vs-rest squared hinge summed over rows times C
    + ||W||^2 / 2).  Returns (W, b) as torch tensors; predict with ``(F @ W + b).argmax(1)``.

    scikit-learn's lbfgs runs in float64 and took over a minute per 100 iterations on 55000 x 1024
    features on the 2-core machine; this is the same convex problem solved ~10x faster."""
    import torch

    X = torch.as_tensor(np.array(F_tr, dtype=np.float32), device=device)
    y = torch.as_tensor(np.array(y_tr, dtype=np.int64), device=device)
    n, d = X.shape
    k = int(y.max()) + 1
    if init is None:
        init = torch.zeros(d, k, device=device), torch.zeros(k, device=device)
    W, b = (t.to(device).clone().requires_grad_(True) for t in init)
    Y = torch.nn.functional.one_hot(y, k).float() * 2 - 1  # +-1 targets for the hinge
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=max_iter, tolerance_grad=1e-6, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        Z = X @ W + b
        if loss == "logistic":  # divided by n for conditioning: the same minimiser
            f = torch.nn.functional.cross_entropy(Z, y, reduction="mean") + (W * W).sum() / (2 * C * n)
        else:
            f = (torch.clamp(1 - Y * Z, min=0) ** 2).sum() / n + (W * W).sum() / (2 * C * n)
        f.backward()
        return f

    opt.step(closure)
    return W.detach(), b.detach()


def linear_predict(model, F):
    import torch

    W, b = model
    return (torch.as_tensor(np.asarray(F, dtype=np.float32), device=W.device) @ W + b).argmax(1).cpu().numpy()


def few_label_table(pretrained, random_sizes: tuple, cfg: dict, X_all, y_all, X_te, y_te, seed: int, timer: Timer,
                    out: Path, res: dict, pretrained_kw: dict | None = None) -> None:
    """The few-labels table: for each n in ``cfg["few_labels"]`` (smallest first, partial results
    written after each), n stratified labelled rows of (X_all, y_all), split 90/10 (60k: 55k + 5k) for
    early stopping inside ``FineTunedClassifier`` (then, with ``cfg["ft_refit"]``, trained again on all n
    rows for the epochs the split chose); the network from ``pretrained`` against the same
    architecture (``random_sizes``) from random initialisation, test accuracy in %.  Small label sets
    get enough epochs for ``cfg["ft_min_updates"]`` Adam steps, patience (and ``cfg["ft_lr_patience"]``,
    the learning-rate halving on plateaus, when given) scaled alike.  ``cfg["few_label_repeats"]`` (an int,
    or one per entry of ``cfg["few_labels"]``; default 1): draws of the labelled rows (and fine-tuning
    seeds) per label count; the first draw is the single run's, the row reports the mean, the standard
    deviation and every draw.  Fills ``res["few_labels"]`` and, when all rows were used,
    ``res["fine_tuned"]`` (from the first draw)."""
    import math

    from ..finetune import FineTunedClassifier

    def err(pred, y):
        return 100.0 * float(np.mean(np.asarray(pred) != np.asarray(y)))

    repeats = _few_label_repeats(cfg)
    rng = np.random.default_rng(seed)
    few = []
    for n in sorted(cfg["few_labels"]):
        n_repeats = repeats[n]
        n = min(n, len(X_all))
        frac = 5000 / 60000 if n >= 60000 else 0.1
        batch = min(cfg["ft_batch_size"], max(1, int(n * (1 - frac))))
        epochs = max(cfg["ft_epochs"], math.ceil(cfg["ft_min_updates"] / math.ceil(int(n * (1 - frac)) / batch)))
        patience = max(cfg["ft_patience"], epochs // 10)
        lr_patience = None if cfg.get("ft_lr_patience") is None else max(cfg["ft_lr_patience"], patience // 3)
        row = {"n_labels": n, "validation_fraction": frac, "epochs": epochs, "patience": patience,
               "lr_patience": lr_patience, "batch_size": batch}
        draws = []
        for r in range(n_repeats):
            # the first draw takes the run's stream (the same rows as a run without repeats), the others
            # their own, so that adding repeats changes no number already reported
            draw_rng = rng if r == 0 else np.random.default_rng([seed, n, r])
            if n >= len(X_all):
                Xs, ys = X_all, y_all
            else:
                from sklearn.model_selection import train_test_split

                Xs, _, ys, _ = train_test_split(X_all, y_all, train_size=n, stratify=y_all,
                                                random_state=int(draw_rng.integers(2 ** 31)))
            common = dict(learning_rate=cfg["ft_lr"], epochs=epochs, patience=patience, batch_size=batch,
                          validation_fraction=frac, random_state=seed + r, lr_patience=lr_patience,
                          dropout=cfg.get("ft_dropout", 0.0), input_dropout=cfg.get("ft_input_dropout", 0.0),
                          refit=cfg.get("ft_refit", False),
                          device=cfg.get("device", "cpu"))
            draw = {}
            for kind in ("pretrained", "random"):
                with timer(f"finetune_{n}_{kind}"):
                    if kind == "pretrained":
                        clf = FineTunedClassifier(pretrained, **(pretrained_kw or {}), **common)
                    else:
                        clf = FineTunedClassifier(None, hidden_layer_sizes=tuple(random_sizes), **common)
                    clf.fit(Xs, ys)
                    draw[f"{kind}_accuracy"] = 100.0 - err(clf.predict(X_te), y_te)
                draw[f"{kind}_best_epoch"] = int(clf.best_epoch_)
                draw[f"{kind}_epochs_run"] = int(clf.n_iter_)
            draws.append(draw)
        if n_repeats == 1:
            row.update(draws[0])
            row["gain"] = row["pretrained_accuracy"] - row["random_accuracy"]
        else:
            gains = [d["pretrained_accuracy"] - d["random_accuracy"] for d in draws]
            for kind in ("pretrained", "random"):
                acc = [d[f"{kind}_accuracy"] for d in draws]
                row[f"{kind}_accuracy"] = float(np.mean(acc))  # the mean over the draws
                row[f"{kind}_sd"] = float(np.std(acc, ddof=1))
            row.update(gain=float(np.mean(gains)), gain_sd=float(np.std(gains, ddof=1)),
                       draws_with_positive_gain=int(sum(x > 0 for x in gains)), repeats=n_repeats, draws=draws)
        if n == len(X_all):
            res["fine_tuned"] = {"test_error": 100.0 - draws[0]["pretrained_accuracy"],
                                 "random_init_test_error": 100.0 - draws[0]["random_accuracy"]}
        few.append(row)
        res["few_labels"] = few
        write_partial(out, {"config": cfg, "results": res, "times_s": timer.times})


def _few_label_repeats(cfg: dict) -> dict:
    """{label count: draws} from ``cfg["few_label_repeats"]``: an int for every label count, or a mapping
    from label count (int or, from JSON, its string) to draws; counts it leaves out get one draw."""
    reps = cfg.get("few_label_repeats", 1)
    bad = ConfigError(f"few_label_repeats must be a positive int or a mapping from label count to a positive "
                      f"int, got {reps!r}")
    if isinstance(reps, dict):
        try:
            reps = {int(k): v for k, v in reps.items()}
        except (TypeError, ValueError):
            raise bad from None
        out = {n: reps.get(n, 1) for n in cfg["few_labels"]}
    else:
        out = {n: reps for n in cfg["few_labels"]}
    if not all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) and r >= 1 for r in out.values()):
        raise bad
    return {n: int(r) for n, r in out.items()}
