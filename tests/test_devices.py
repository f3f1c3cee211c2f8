"""The library on an accelerator: every public path runs there, gives the CPU's numbers for the same
parameters, saves to files the CPU loads, and trains without a host synchronisation per batch.

Each test runs once per accelerator torch sees (CUDA, Apple's MPS) and is skipped where there is none,
as on CI.  The GPU run of these is recorded in docs/BENCHMARKS.md.
"""

import collections
import os
import traceback
import warnings

import numpy as np
import pytest
import torch

import harmonium as hm
from harmonium import estimate

from conftest import N_HIDDEN, N_SAMPLES, N_VISIBLE, all_states, make_model

ACCELERATORS = [
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
    pytest.param("mps", marks=pytest.mark.skipif(not torch.backends.mps.is_available(), reason="no MPS device")),
]
# MPS has no float64: only float32 runs there
DTYPES = [torch.float32, torch.float64]


@pytest.fixture(params=ACCELERATORS)
def device(request):
    return request.param


def _skip_unsupported(device, dtype):
    if device == "mps" and dtype == torch.float64:
        pytest.skip("MPS has no float64")


def _data(n=N_SAMPLES * 9, nv=N_VISIBLE, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, nv)) < np.linspace(0.1, 0.9, nv)).astype(np.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("visible,hidden", [("bernoulli", "bernoulli"), ("gaussian", "bernoulli"),
                                            ("softmax", "bernoulli"), ("bernoulli", "gaussian")])
def test_model_quantities_match_the_cpu(device, dtype, visible, hidden):
    _skip_unsupported(device, dtype)
    cpu = make_model(visible, hidden, dtype=dtype, seed=3, scale=0.5, centered=True)
    dev = make_model(visible, hidden, dtype=dtype, seed=3, scale=0.5, centered=True).to(device)
    g = torch.Generator().manual_seed(0)
    V = cpu.visible.sample(cpu.visible.mean(torch.randn(N_SAMPLES, N_VISIBLE, generator=g, dtype=dtype)),
                           generator=g)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    Vd = V.to(device)
    torch.testing.assert_close(dev.free_energy(Vd).cpu(), cpu.free_energy(V), **tol)
    torch.testing.assert_close(dev.hidden_input(Vd).cpu(), cpu.hidden_input(V), **tol)
    exact = estimate.exact_log_partition(cpu)
    assert estimate.exact_log_partition(dev) == pytest.approx(exact, rel=1e-5, abs=1e-4)
    # sampling stays on the device and in the dtype
    h = dev.sample_hidden(Vd, generator=torch.Generator(device).manual_seed(0))
    assert h.device.type == device and h.dtype == dtype and h.shape == (N_SAMPLES, N_HIDDEN)


def test_ais_on_the_device_matches_the_exact_log_partition(device):
    m = make_model("bernoulli", "bernoulli", N_VISIBLE, N_HIDDEN, dtype=torch.float32, centered=True)
    exact = estimate.exact_log_partition(m)
    # exact samples of the visible units, drawn on the CPU by enumeration, for reverse AIS
    V = all_states(m.visible, torch.float32)
    p = torch.softmax(-m.free_energy(V).double(), 0)
    samples = V[torch.multinomial(p, 100, replacement=True, generator=torch.Generator().manual_seed(1))]
    m = m.to(device)
    r = estimate.ais(m, n_runs=100, betas=2000, random_state=0)
    assert abs(r.log_z - exact) <= 0.1
    rev = estimate.reverse_ais(m, samples.to(device), betas=2000, random_state=2)
    assert abs(rev.log_z - exact) <= 0.1


@pytest.mark.parametrize("options", [dict(), dict(persistent=True, n_chains=13), dict(n_temperatures=3, n_chains=13),
                                     dict(k=3, centering=True, dropout=0.2, sparsity_target=0.1, sparsity_cost=0.1,
                                          max_norm=3.0), dict(optimizer="adam", learning_rate=0.01)],
                         ids=["cd", "pcd", "pt", "cd3-centred-dropout-sparsity-maxnorm", "adam"])
def test_rbm_trains_on_the_device_and_saves_for_the_cpu(device, options, tmp_path):
    X = _data()
    est = hm.RBM(n_hidden=N_HIDDEN, epochs=3, batch_size=N_SAMPLES, random_state=0, device=device, **options).fit(X)
    assert all(p.device.type == device for p in est.model_.parameters())
    H = est.transform(X)
    assert isinstance(H, np.ndarray) and H.shape == (len(X), N_HIDDEN) and np.isfinite(H).all()
    assert np.isfinite(est.score(X))
    assert est.sample(4, n_steps=5).shape == (4, N_VISIBLE)
    est.save(tmp_path / "m.safetensors")
    back = hm.load(tmp_path / "m.safetensors", device="cpu")
    assert all(p.device.type == "cpu" for p in back.model_.parameters())
    np.testing.assert_allclose(back.transform(X), H, rtol=1e-5, atol=1e-6)
    # and resumes on the device from the file
    again = hm.load(tmp_path / "m.safetensors", device=device).set_params(epochs=4, warm_start=True).fit(X)
    assert np.isfinite(again.transform(X)).all()


def test_rbm_fit_is_reproducible_on_the_device(device):
    X = _data()
    a = hm.RBM(n_hidden=N_HIDDEN, epochs=2, batch_size=N_SAMPLES, random_state=7, device=device).fit(X)
    b = hm.RBM(n_hidden=N_HIDDEN, epochs=2, batch_size=N_SAMPLES, random_state=7, device=device).fit(X)
    np.testing.assert_array_equal(a.components_, b.components_)


def _host_syncs(fn) -> collections.Counter:
    """The synchronising CUDA calls made by ``fn``, counted by the library lines that made them
    (torch's sync-debug mode warns on each)."""
    sites: collections.Counter = collections.Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            frames = [f for f in traceback.extract_stack()[:-1] if f"{os.sep}harmonium{os.sep}" in f.filename]
            sites[" <- ".join(f"{os.path.basename(f.filename)}:{f.lineno}" for f in frames[-3:][::-1])] += 1

    torch.cuda.synchronize()
    with warnings.catch_warnings():  # showwarning runs where the warning is raised: its stack is the site
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sites


def _syncs_of_an_epoch(device, n_batches, make):
    X = _data(n=N_SAMPLES * n_batches)
    est = make().fit(X[:N_SAMPLES * 2])  # the first fit: allocations, lazy initialisations
    est.set_params(warm_start=True, epochs=2)
    return _host_syncs(lambda: est.fit(X))


def _assert_no_sync_per_batch(device, make):
    """An epoch of 4 batches and one of 40 make the same host synchronisations, from the same lines."""
    if device != "cuda":
        pytest.skip("sync-debug mode is CUDA's")
    _syncs_of_an_epoch(device, 4, make)  # once unmeasured: any first-use synchronisation happens here
    few, many = _syncs_of_an_epoch(device, 4, make), _syncs_of_an_epoch(device, 40, make)
    assert few == many, f"4 batches: {dict(few)}; 40 batches: {dict(many)}"


@pytest.mark.parametrize("options", [dict(), dict(persistent=True, n_chains=13), dict(n_temperatures=3, n_chains=13)],
                         ids=["cd", "pcd", "pt"])
def test_rbm_epoch_makes_no_host_sync_per_batch(device, options):
    _assert_no_sync_per_batch(device, lambda: hm.RBM(n_hidden=N_HIDDEN, epochs=1, batch_size=N_SAMPLES, random_state=0,
                                                     metrics=None, device=device, **options))


def test_dbm_epoch_makes_no_host_sync_per_batch(device):
    """With a fixed number of mean-field sweeps (``mf_tol=0``; a tolerance needs a host check per sweep)."""
    _assert_no_sync_per_batch(device, lambda: hm.DBM((5, 3), epochs=1, batch_size=N_SAMPLES, n_particles=13,
                                                     pretrain=False, mf_tol=0.0, max_mf_updates=5, metrics=None,
                                                     random_state=0, device=device))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_dbm_on_the_device_matches_the_cpu_and_round_trips(device, dtype, tmp_path):
    """A centred DBM (its offsets are training state that must follow the model to the device)."""
    _skip_unsupported(device, dtype)
    X = _data()
    name = "float32" if dtype == torch.float32 else "float64"
    est = hm.DBM((5, 3), epochs=2, batch_size=N_SAMPLES, n_particles=13, random_state=0, dtype=name,
                 centering=True, device=device).fit(X)
    assert all(p.device.type == device for p in est.model_.parameters())
    est.save(tmp_path / "d.safetensors")
    cpu = hm.load(tmp_path / "d.safetensors", device="cpu")
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(est.transform(X), cpu.transform(X), **tol)
    Xt = torch.as_tensor(X, dtype=dtype)
    exact = estimate.exact_log_partition(cpu.model_)
    assert estimate.exact_log_partition(est.model_) == pytest.approx(exact, rel=1e-5, abs=1e-4)
    torch.testing.assert_close(estimate.elbo(est.model_, Xt.to(device), exact).cpu(),
                               estimate.elbo(cpu.model_, Xt, exact), rtol=1e-4, atol=1e-4)
    r = estimate.ais(est.model_, n_runs=100, betas=2000, random_state=0)
    assert abs(r.log_z - exact) <= 0.15
    assert est.sample(3, n_steps=5).shape == (3, N_VISIBLE)
    # a file trained on the CPU resumes on the device, and the reverse
    hm.load(tmp_path / "d.safetensors", device="cpu").set_params(epochs=3, warm_start=True).fit(X).save(tmp_path / "c.safetensors")
    assert hm.load(tmp_path / "c.safetensors", device=device).set_params(epochs=4, warm_start=True).fit(X).history_["epoch"][-1] == 4


def test_dbn_and_fine_tuning_on_the_device(device):
    X = _data()
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)
    dbn = hm.DBN((5, 3), rbm_params=dict(epochs=2, batch_size=N_SAMPLES), random_state=0, device=device).fit(X)
    assert dbn.transform(X).shape == (len(X), 3)
    rbm = hm.RBM(n_hidden=N_HIDDEN, epochs=2, batch_size=N_SAMPLES, random_state=0, device=device).fit(X)
    clf = hm.FineTunedClassifier(rbm, epochs=3, batch_size=N_SAMPLES, random_state=0, device=device).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert clf.score(X, y) > 0.3


def test_quick_experiments_run_on_the_device(device, tmp_path):
    """The experiments put every model and classifier on ``device`` (grbm-patches needs no data folder;
    dbm-mnist runs where MNIST is available)."""
    from harmonium.experiments import run

    res = run("grbm-patches", tmp_path / "g", quick=True, device=device)
    r = res["results"]
    assert abs(r["log_z_reverse_ais"] - r["log_z_exact"]) < 0.1 and res["config"]["device"] == device
    root = os.environ.get("HARMONIUM_DATA")
    if root:
        res = run("dbm-mnist", tmp_path / "d", quick=True, data_dir=root, device=device)
        r = res["results"]
        assert r["test_elbo"] < 0 and r["log_z_ais_interval"][0] <= r["log_z_ais"] <= r["log_z_ais_interval"][1]
        assert all(0 <= row[k] <= 100 for row in r["few_labels"] for k in ("pretrained_accuracy", "random_accuracy"))
