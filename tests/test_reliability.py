"""Surviving kills and divergence: checkpoints resume bit-identically; NaN stops training cleanly."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import harmonium as hm

SCRIPT = r"""
import sys, numpy as np, torch, harmonium as hm
torch.set_num_threads(1)
X = (np.random.default_rng(0).random((3000, 49)) < 0.3).astype(np.float32)
est = hm.RBM(n_hidden=32, epochs=8, batch_size=10, persistent=True, n_chains=20, momentum=0.9,
             sample_v_states=True, random_state=5, metrics=["reconstruction_error"],
             checkpoint_path=sys.argv[1], checkpoint_every=1)
est.fit(X)
np.save(sys.argv[2], est.model_.W.detach().numpy())
"""


def _run(script, ckpt, out, kill_after=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, str(script), str(ckpt), str(out)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
        return True
    time.sleep(kill_after)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return False
    return True


def test_sigkill_at_any_moment_then_rerun_is_bit_identical(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    _run(script, tmp_path / "ref.safetensors", tmp_path / "ref.npy")
    ref = np.load(tmp_path / "ref.npy")
    ckpt, out = tmp_path / "ckpt.safetensors", tmp_path / "out.npy"
    rng = np.random.default_rng(0)
    kills = 0
    for _ in range(4):
        if _run(script, ckpt, out, kill_after=float(rng.uniform(1.5, 4.0))):
            break
        kills += 1
        leftovers = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
        for f in leftovers:  # a kill during a save may leave a temporary file, never a broken checkpoint
            os.unlink(tmp_path / f)
        if ckpt.exists():
            hm.load(ckpt)  # always a complete, loadable file
    _run(script, ckpt, out)
    assert kills >= 1, "the runs finished before any kill: make the script longer"
    assert np.array_equal(np.load(out), ref)
    saved = hm.load(ckpt)
    assert saved.epochs_trained_ == 8 and saved.history_["epoch"] == list(range(1, 9))


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_state(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 7)) * 100
    ckpt = tmp_path / "c.safetensors"
    est = hm.RBM(n_hidden=5, visible="gaussian", epochs=2, learning_rate=1e-6, random_state=0, checkpoint_path=ckpt,
                 metrics=None)
    est.fit(X)
    good = {k: v.clone() for k, v in est.model_.state_dict().items()}
    before = ckpt.read_bytes()
    est.set_params(epochs=6, learning_rate=1e12, warm_start=True)
    with pytest.raises(hm.DivergenceError, match=r"epoch 3.*learning rate \(1000000000000.0\)") as info:
        est.fit(X)
    assert isinstance(info.value, ArithmeticError)
    for k, v in est.model_.state_dict().items():
        assert torch.equal(v, good[k]), k
    assert ckpt.read_bytes() == before
    assert est.epochs_trained_ == 2
    assert hm.load(ckpt).epochs_trained_ == 2  # the checkpoint still loads, at the last good epoch


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    X = (np.random.default_rng(0).random((30, 7)) < 0.5).astype(float)
    ckpt = tmp_path / "c.safetensors"
    hm.RBM(n_hidden=5, epochs=1, checkpoint_path=ckpt).fit(X)
    with pytest.raises(ValueError, match="n_hidden=5.*n_hidden=4"):
        hm.RBM(n_hidden=4, epochs=1, checkpoint_path=ckpt).fit(X)


def test_existing_checkpoint_is_resumed_not_restarted(tmp_path):
    X = (np.random.default_rng(0).random((30, 7)) < 0.5).astype(float)
    ckpt = tmp_path / "c.safetensors"
    kw = dict(n_hidden=5, random_state=1, checkpoint_path=ckpt)
    hm.RBM(epochs=2, **kw).fit(X)
    again = hm.RBM(epochs=3, **kw).fit(X)
    straight = hm.RBM(n_hidden=5, random_state=1, epochs=3).fit(X)
    assert again.epochs_trained_ == 3
    assert torch.equal(again.model_.W, straight.model_.W)
