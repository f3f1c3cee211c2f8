"""Run by ``tests/test_distributed.py`` under ``torchrun --nproc-per-node 2``: every scenario of
``SCENARIOS`` trained data-parallel, plus AIS and checkpoint/resume; rank 0 writes the results to
``OUT/results.safetensors`` (tensors) and ``OUT/results.json`` (numbers).  The same functions run
in one process inside the tests for the comparison."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from harmonium import DBM, RBM, distributed, estimate

# deterministic states: the update is a function of the data and the permutation only, so any
# number of ranks must give the single-process weights; batch 5 over 22 rows gives shares 3 + 2
# and a last batch of 2 (1 + 1)
DETERMINISTIC = dict(n_hidden=5, batch_size=5, epochs=6, learning_rate=0.3, momentum=0.5, l2=1e-3, W_init=0.3,
                     sample_v_states=False, sample_h_states=False, random_state=3, metrics=None)
SCENARIOS = {
    "cd_float64": dict(DETERMINISTIC, dtype="float64"),
    "cd_float32": dict(DETERMINISTIC, dtype="float32"),
    "cd3_sparse_centered_maxnorm": dict(DETERMINISTIC, dtype="float64", k=3, sparsity_target=0.1,
                                        sparsity_cost=0.5, centering=True, max_norm=0.5),
    "pcd": dict(DETERMINISTIC, dtype="float64", persistent=True, n_chains=5),
    "pcd_centered_averaged": dict(DETERMINISTIC, dtype="float64", persistent=True, n_chains=5, centering=True,
                                  ema_decay=0.8),
    "adam": dict(DETERMINISTIC, dtype="float64", optimizer="adam", learning_rate=0.03),
    "gaussian_learn_sigma": dict(DETERMINISTIC, dtype="float64",
                                 visible={"name": "gaussian", "learn_sigma": True}),
}


def data(seed: int = 0, n: int = 22, d: int = 7, gaussian: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) if gaussian else (rng.random((n, d)) < 0.4).astype(np.float64)


def train(name: str) -> RBM:
    params = SCENARIOS[name]
    X = data(gaussian="gaussian" in name)
    return RBM(**params).fit(X)


def finetune(optimizer: str):
    """A pretrained RBM (deterministic states) fine-tuned as a 7-5-2 classifier, no dropout, with
    weight averaging and a refit on every row."""
    from harmonium import FineTunedClassifier

    X = data(2, n=23)
    y = (X[:, 0] + X[:, 1] > 0.5).astype(int)
    rbm = train("cd_float64")
    return FineTunedClassifier(rbm, optimizer=optimizer, learning_rate=0.05, epochs=5, batch_size=5,
                               validation_fraction=0.2, patience=10, random_state=1, dtype="float64", ema_decay=0.5,
                               refit=True).fit(X, y)


def ratings_model():
    """A user-based RatingsRBM on 40 users x 12 items of two tastes (about half the ratings missing)."""
    from harmonium.collaborative import RatingsRBM

    rng = np.random.default_rng(3)
    rows = []
    for user in range(40):
        taste = user % 2
        for item in range(12):
            if rng.random() < 0.5:
                likes = (item < 6) == (taste == 0)
                rows.append((user, item, int(np.clip(round(4.5 if likes else 1.5) + rng.integers(-1, 2), 1, 5))))
    return RatingsRBM(n_hidden=4, epochs=60, batch_size=7, learning_rate=0.1, random_state=0,
                      dtype="float64").fit(np.array(rows))


def bars_and_stripes() -> np.ndarray:
    rows = []
    for bits in range(8):
        pattern = np.array([(bits >> i) & 1 for i in range(3)], dtype=np.float64)
        rows.append(np.repeat(pattern[:, None], 3, 1).ravel())  # bars
        rows.append(np.repeat(pattern[None, :], 3, 0).ravel())  # stripes
    return np.unique(np.array(rows), axis=0)


# the chains sample their visible states (the estimator's default since session 38; with visible
# means, the earlier default, this setting reached about -3.9 and fell with longer training)
PCD_SAMPLED = dict(n_hidden=8, batch_size=14, epochs=300, learning_rate=0.1, momentum=0.5, l2=0.0,
                   persistent=True, n_chains=20, random_state=0, dtype="float64", metrics=None)


PCD_SEEDS_ONE_RANK, PCD_SEEDS_TWO_RANKS = 8, 4


def pcd_sampled(seed: int) -> float:
    """Exact average log-likelihood of bars-and-stripes 3x3 after PCD with sampled states."""
    X = np.repeat(bars_and_stripes(), 5, 0)
    est = RBM(**dict(PCD_SAMPLED, random_state=seed)).fit(X)
    return float(estimate.exact_log_likelihood(est, torch.as_tensor(bars_and_stripes())).mean())


def ais_model() -> RBM:
    rng = np.random.default_rng(5)
    return RBM.from_arrays(rng.normal(0, 0.5, (7, 5)), rng.normal(0, 0.5, 7), rng.normal(0, 0.5, 5),
                           dtype="float64")


AIS = dict(n_runs=200, betas=300, random_state=11)


def resume_pairs(tmp: Path) -> dict[str, torch.Tensor]:
    """(straight, resumed) weights for sampled PCD, parallel tempering and a DBM: 4 epochs in one go
    versus 2 epochs, a checkpoint, and a fresh estimator that resumes from it to 4."""
    out = {}
    X = data(1, n=40)
    makers = {
        "pcd": lambda ep, path: RBM(n_hidden=5, batch_size=8, epochs=ep, persistent=True, n_chains=6,
                                    random_state=2, dtype="float64", checkpoint_path=path, metrics=None),
        "pt": lambda ep, path: RBM(n_hidden=5, batch_size=8, epochs=ep, n_temperatures=3, n_chains=6,
                                   random_state=2, dtype="float64", checkpoint_path=path, metrics=None),
        "dbm": lambda ep, path: DBM((5, 3), batch_size=8, epochs=ep, n_particles=6, random_state=2,
                                    dtype="float64", checkpoint_path=path, metrics=None,
                                    pretrain_params={"epochs": 2}),
    }
    for name, make in makers.items():
        straight = make(4, None).fit(X)
        path = tmp / f"{name}.safetensors"
        make(2, path).fit(X)
        resumed = make(4, path).fit(X)
        for i, (a, b) in enumerate(zip(straight.model_.parameters(), resumed.model_.parameters())):
            out[f"resume.{name}.{i}.straight"] = a.detach().clone()
            out[f"resume.{name}.{i}.resumed"] = b.detach().clone()
    return out


def main(out_dir: str) -> None:
    from safetensors.torch import save_file

    group = distributed.current()
    assert group is not None and group.world_size == 2, "run me under torchrun --nproc-per-node 2"
    tensors: dict[str, torch.Tensor] = {}
    numbers: dict[str, float] = {}
    for name in SCENARIOS:
        est = train(name)
        for i, p in enumerate(est.model_.parameters()):
            tensors[f"{name}.{i}"] = p.detach().clone()
    for optimizer in ("sgd", "adam"):
        net = finetune(optimizer).network_
        for i, p in enumerate(net.parameters()):
            tensors[f"finetune_{optimizer}.{i}"] = p.detach().clone()
    ratings = ratings_model()
    for i, p in enumerate(ratings.model_.parameters()):
        tensors[f"ratings.{i}"] = p.detach().clone()
    numbers["ratings_rmse"] = ratings.history_["train_rmse"][-1]
    # parameters stay identical on every rank
    W = train("pcd").model_.W.detach()
    gathered = distributed.gather_rows(W[None])
    numbers["max_rank_difference"] = float((gathered[0] - gathered[1]).abs().max())
    for seed in range(PCD_SEEDS_TWO_RANKS):
        numbers[f"pcd_sampled_ll_{seed}"] = pcd_sampled(seed)
    try:  # each rank passing its own data is a usage error, reported the same way on every rank
        RBM(n_hidden=3, epochs=1, metrics=None).fit(data(group.rank))
        numbers["different_data_error"] = ""
    except ValueError as e:
        numbers["different_data_error"] = str(e)
    result = estimate.ais(ais_model(), **AIS)
    numbers.update(ais_log_z=result.log_z, ais_lo=result.log_z_interval[0], ais_hi=result.log_z_interval[1],
                   ais_n=result.log_weights.numel())
    tmp = Path(out_dir) / f"rank{group.rank}"
    tmp.mkdir(parents=True, exist_ok=True)
    # checkpoints must be shared: rank 0 writes, every rank reads
    shared = Path(out_dir) / "checkpoints"
    shared.mkdir(parents=True, exist_ok=True)
    tensors.update(resume_pairs(shared))
    if group.is_main:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(Path(out_dir) / "results.safetensors"))
        (Path(out_dir) / "results.json").write_text(json.dumps(numbers))


if __name__ == "__main__":
    main(sys.argv[1])
    torch.distributed.barrier()  # rank 0 writes last: leave together
    torch.distributed.destroy_process_group()
    # as harmonium.cli.main does: skip the interpreter's finalization, where gloo (torch 2.13, CPU)
    # now and then aborts with "terminate called without an active exception"
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
