"""Data-parallel training: 2 gloo processes on localhost (``torchrun``) against one process.

``distributed_worker.py`` runs every scenario under ``torchrun --nproc-per-node 2`` once per
session; the tests recompute the same scenarios in this (single) process and compare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import distributed_worker as worker
from harmonium import RBM, distributed, estimate

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def torchrun(args: list[str], cwd, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).parent), str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    from safetensors.torch import load_file

    out = tmp_path_factory.mktemp("two_ranks")
    torchrun([str(Path(worker.__file__)), str(out)], cwd=out)
    return load_file(str(out / "results.safetensors")), json.loads((out / "results.json").read_text())


def test_no_process_group_means_single_process():
    assert distributed.current() is None
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize("name", sorted(worker.SCENARIOS))
def test_deterministic_states_give_the_single_process_weights(two_ranks, name):
    tensors, _ = two_ranks
    single = worker.train(name)
    params = list(single.model_.parameters())
    assert len(params) == len([k for k in tensors if k.startswith(name + ".")])
    for i, p in enumerate(params):
        got = tensors[f"{name}.{i}"]
        assert got.dtype == p.dtype
        torch.testing.assert_close(got, p.detach(), atol=1e-5, rtol=0, msg=f"{name} parameter {i}")


@pytest.mark.parametrize("change", [{"epochs": 7}, {"batch_size": 6}, {"random_state": 4}])
def test_the_comparison_can_fail(two_ranks, change):
    """Another epoch, other batches or another shuffle move the weights far beyond the tolerance."""
    tensors, _ = two_ranks
    other = RBM(**dict(worker.SCENARIOS["cd_float64"], **change)).fit(worker.data())
    assert (tensors["cd_float64.0"] - other.model_.W.detach()).abs().max() > 1e-2


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fine_tuning_on_two_ranks_equals_one(two_ranks, optimizer):
    tensors, _ = two_ranks
    params = list(worker.finetune(optimizer).network_.parameters())
    assert len(params) == len([k for k in tensors if k.startswith(f"finetune_{optimizer}.")])
    for i, p in enumerate(params):
        torch.testing.assert_close(tensors[f"finetune_{optimizer}.{i}"], p.detach(), atol=1e-5, rtol=0)


def test_ratings_rbm_on_two_ranks_learns_as_well_as_one(two_ranks):
    """Sampled CD on the cases split over ranks: the training RMSE of 2 ranks is that of 1 rank
    within the spread of seeds (the two groups of tastes are learned either way)."""
    tensors, numbers = two_ranks
    one = worker.ratings_model()
    rmse = one.history_["train_rmse"][-1]
    assert rmse < 1.0, rmse  # learned: rating noise alone is about 0.8
    assert abs(numbers["ratings_rmse"] - rmse) < 0.1, (numbers["ratings_rmse"], rmse)
    for i, p in enumerate(one.model_.parameters()):
        assert tensors[f"ratings.{i}"].shape == p.shape
        assert not torch.equal(tensors[f"ratings.{i}"], p)  # other sampling streams: not a copy of one rank


def test_ranks_with_different_data_are_told(two_ranks):
    assert "X differs between ranks" in two_ranks[1]["different_data_error"]


def test_ranks_hold_identical_parameters(two_ranks):
    assert two_ranks[1]["max_rank_difference"] == 0.0


def test_sampled_pcd_on_two_ranks_learns_as_well_as_one(two_ranks):
    """Bars-and-stripes 3x3 (exact log-likelihood), PCD with sampled states: the mean over 4 seeds on 2
    ranks equals the mean over 8 seeds on 1 rank within 3 standard errors (seed-to-seed spread about
    0.4 nats), and every 2-rank run lies within the 1-rank range widened by 0.5."""
    _, numbers = two_ranks
    two = np.array([numbers[f"pcd_sampled_ll_{s}"] for s in range(worker.PCD_SEEDS_TWO_RANKS)])
    one = np.array([worker.pcd_sampled(s) for s in range(worker.PCD_SEEDS_ONE_RANK)])
    uniform = -9 * np.log(2)
    # training worked in one process (untrained about -6.2; the 8 seeds average about -4.0)
    assert one.mean() > uniform + 1.5 and one.min() > uniform + 1.0, one
    se = np.sqrt(one.var(ddof=1) / len(one) + two.var(ddof=1) / len(two))
    assert abs(two.mean() - one.mean()) < 3 * se + 0.05, (two, one)
    assert one.min() - 0.5 <= two.min() and two.max() <= one.max() + 0.5, (two, one)


def test_ais_split_across_ranks(two_ranks):
    _, numbers = two_ranks
    model = worker.ais_model()
    one = estimate.ais(model, **worker.AIS)
    exact = estimate.exact_log_partition(model)
    assert numbers["ais_n"] == worker.AIS["n_runs"]  # every rank's runs were gathered
    assert one.log_z_interval[0] <= numbers["ais_log_z"] <= one.log_z_interval[1]
    assert numbers["ais_lo"] <= one.log_z <= numbers["ais_hi"]
    assert numbers["ais_lo"] - 0.05 <= exact <= numbers["ais_hi"] + 0.05
    assert numbers["ais_log_z"] != one.log_z  # ranks drew their own runs, not rank 0's twice


@pytest.mark.parametrize("name", ["pcd", "pt", "dbm"])
def test_resume_from_a_checkpoint_on_two_ranks_is_exact(two_ranks, name):
    tensors, _ = two_ranks
    keys = sorted({k.rsplit(".", 1)[0] for k in tensors if k.startswith(f"resume.{name}.")})
    assert keys
    for key in keys:
        torch.testing.assert_close(tensors[key + ".resumed"], tensors[key + ".straight"], atol=0, rtol=0)


def test_command_line_under_torchrun(tmp_path):
    """``torchrun -m harmonium train``: rank 0 alone writes the model and its pictures."""
    X = (np.random.default_rng(0).random((60, 7)) < 0.3).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    subprocess.run([sys.executable, "-m", "harmonium", "init", str(tmp_path / "m.safetensors"), "--visible", "7",
                    "--hidden", "5", "--seed", "1"], check=True, capture_output=True, cwd=tmp_path)
    proc = torchrun(["-m", "harmonium", "train", str(tmp_path / "m.safetensors"), str(tmp_path / "x.npy"),
                     "--epochs", "3", "--batch-size", "10"], cwd=tmp_path)
    assert proc.stdout.count("epoch") >= 1
    from harmonium import io
    est = io.load(tmp_path / "m.safetensors")
    assert est.epochs_trained_ == 3
