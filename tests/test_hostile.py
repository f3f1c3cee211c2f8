"""Hostile model files and numerical extremes: only clean refusals or correct loads, finite numbers."""

import json
import struct
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import harmonium as hm
from harmonium import estimate

from conftest import all_states, make_model

X = (np.random.default_rng(0).random((40, 7)) < 0.4).astype(np.float32)
_VALID: dict[str, bytes] = {}


def valid_bytes(tmp_path_factory, kind: str = "rbm") -> bytes:
    """A valid model file: an RBM with persistent chains, or a two-layer DBN (nested layer configurations)."""
    if kind not in _VALID:
        path = tmp_path_factory.mktemp("valid") / "m.safetensors"
        est = (hm.RBM(n_hidden=5, epochs=1, persistent=True, n_chains=3, random_state=0) if kind == "rbm" else
               hm.DBN(n_hidden=(5, 3), rbm_params={"epochs": 1}, random_state=0))
        est.fit(X).save(path)
        _VALID[kind] = path.read_bytes()
    return _VALID[kind]


def load_bytes(data: bytes, tmp_path) -> object:
    path = tmp_path / "f.safetensors"
    path.write_bytes(data)
    return hm.load(path)


@pytest.mark.parametrize("model", ["rbm", "dbn"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_model_files_load_correctly_or_are_refused_cleanly(model, data, tmp_path_factory):
    raw = bytearray(valid_bytes(tmp_path_factory, model))
    kind = data.draw(st.sampled_from(["flip", "truncate", "splice", "header"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
    elif kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "splice":
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    else:  # mutate inside the JSON header, where the interesting structure is
        n = struct.unpack("<Q", bytes(raw[:8]))[0]
        i = data.draw(st.integers(8, 8 + n - 1))
        raw[i] = data.draw(st.sampled_from(list(b'0123456789{}[]",:-eE.a ')))
    tmp = tmp_path_factory.mktemp("fuzz")
    try:
        est = load_bytes(bytes(raw), tmp)
    except (ValueError, OSError):
        return
    # a load that succeeds must give a usable, finite model
    assert all(torch.isfinite(p).all() for r in getattr(est, "rbms_", [est]) for p in r.model_.parameters())
    est.transform(X)


def test_huge_declared_shapes_are_refused_before_allocation(tmp_path):
    header = {"model.W": {"dtype": "F32", "shape": [10 ** 6, 10 ** 6], "data_offsets": [0, 16]},
              "__metadata__": {"format": "harmonium", "format_version": "1",
                               "config": json.dumps({"class": "RBM", "params": {"n_hidden": 10 ** 6},
                                                     "n_features_in": 10 ** 6})}}
    h = json.dumps(header).encode()
    with pytest.raises(ValueError):
        load_bytes(struct.pack("<Q", len(h)) + h + b"\0" * 16, tmp_path)


def test_zip_payloads_and_torch_pickles_are_refused(tmp_path):
    zpath = tmp_path / "z.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("data.pkl", b"\x80\x04K\x01.")
    with pytest.raises(ValueError):
        load_bytes(zpath.read_bytes(), tmp_path)
    tpath = tmp_path / "t.pt"
    torch.save({"W": torch.zeros(3)}, tpath)
    with pytest.raises(ValueError):
        load_bytes(tpath.read_bytes(), tmp_path)


@pytest.mark.parametrize("visible", ["bernoulli", "softmax", "gaussian"])
def test_extreme_weights_keep_everything_finite(visible, dtype):
    """Weights of magnitude 50 and inputs at the edges of the support: free energies, conditionals,
    pseudo-likelihood, exact log Z and AIS stay finite in float32 and float64."""
    nv = 9 if visible == "softmax" else 7
    m = make_model(visible, "bernoulli", nv, 5, scale=50.0, seed=3).to(dtype)
    if visible == "gaussian":
        V = torch.tensor([[-1e3] * nv, [0.0] * nv, [1e3] * nv], dtype=dtype)
    else:
        V = all_states(m.visible).to(dtype)
    for t in (m.free_energy(V), m.hidden_mean(V), m.visible_mean(m.hidden_mean(V)),
              estimate.pseudo_log_likelihood(m, V)):
        assert torch.isfinite(t).all()
    log_z = estimate.exact_log_partition(m)
    assert np.isfinite(log_z)
    r = estimate.ais(m, n_runs=10, betas=200, random_state=0)
    assert np.isfinite(r.log_z) and torch.isfinite(r.log_weights).all()


def test_extreme_dbm_elbo_and_ais_are_finite(dtype):
    from harmonium.dbm import DBMModel
    from harmonium.units import Bernoulli
    g = torch.Generator().manual_seed(0)
    m = DBMModel([Bernoulli(7), Bernoulli(5), Bernoulli(3)]).to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g).to(dtype) * 50)
    V = all_states(m.layers[0]).to(dtype)
    assert torch.isfinite(estimate.elbo(m, V)).all()
    r = estimate.ais(m, n_runs=10, betas=200, random_state=0)
    assert np.isfinite(r.log_z)
