"""Model files: round trips, bit-identical resume, refusal of corrupt or foreign files."""

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import harmonium as hm

from conftest import N_HIDDEN, N_VISIBLE, bars_and_stripes

X = np.tile(bars_and_stripes(3), (5, 1))
RNG = np.random.default_rng(0)

UNIT_CASES = {
    "bernoulli": (dict(), X),
    "gaussian-learned": (dict(visible={"name": "gaussian", "learn_sigma": True, "sigma": 0.7}, learning_rate=0.001),
                         RNG.normal(size=(40, N_VISIBLE))),
    "softmax": (dict(visible={"name": "softmax", "group_size": 3}),
                np.eye(3)[RNG.integers(0, 3, (40, 3))].reshape(40, 9)),
    "multinomial-hidden": (dict(hidden={"name": "multinomial", "n_draws": 2}), X),
}


@pytest.mark.parametrize("case", list(UNIT_CASES))
def test_round_trip_each_unit_type(case, tmp_path, dtype):
    kw, data = UNIT_CASES[case]
    est = hm.RBM(n_hidden=N_HIDDEN, epochs=2, random_state=0, dtype=str(dtype)[6:], centering=True, **kw).fit(data)
    path = est.save(tmp_path / "m.safetensors")
    back = hm.load(path)
    assert type(back) is type(est)
    assert back.get_params() == est.get_params()
    for (k, a), (k2, b) in zip(est.model_.state_dict().items(), back.model_.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert np.array_equal(back.transform(data), est.transform(data))
    assert back.history_ == est.history_
    assert np.array_equal(back.sample(3, 4), est.sample(3, 4))  # generator state saved too


@pytest.mark.parametrize("algo", [dict(), dict(persistent=True, n_chains=7),
                                  dict(n_temperatures=3, n_chains=5), dict(optimizer="adam", centering=True,
                                                                            sparsity_target=0.1, sparsity_cost=0.1),
                                  dict(persistent=True, centering=True, ema_decay=0.9)],
                         ids=["cd", "pcd", "tempering", "adam-centered-sparse", "pcd-centered-ema"])
def test_resume_is_bit_identical(algo, tmp_path):
    kw = dict(n_hidden=N_HIDDEN, random_state=3, batch_size=4, sample_v_states=True, **algo)
    straight = hm.RBM(epochs=4, **kw).fit(X)
    first = hm.RBM(epochs=2, **kw).fit(X)
    first.save(tmp_path / "m.safetensors")
    resumed = hm.load(tmp_path / "m.safetensors").set_params(epochs=4, warm_start=True).fit(X)
    for a, b in zip(straight.model_.state_dict().values(), resumed.model_.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.history_ == straight.history_


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    est = hm.RBM(n_hidden=3, epochs=1, random_state=0).fit(X)
    path = tmp_path / "m.safetensors"
    est.save(path)
    good = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        hm.RBM(n_hidden=4, epochs=1, random_state=1).fit(X).save(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["m.safetensors"]


def _valid(tmp_path):
    est = hm.RBM(n_hidden=3, epochs=1, random_state=0, persistent=True).fit(X)
    return est.save(tmp_path / "valid.safetensors")


@pytest.mark.parametrize("kind,match", [
    ("empty", "too short"),
    ("random", "not a valid harmonium model file"),
    ("truncated", "not a valid harmonium model file"),
    ("pickle", "not a valid harmonium model file"),
    ("foreign", "not a harmonium model"),
    ("version", "format version '99'"),
    ("bad-shape", "has shape"),
    ("huge-declared", "has shape"),
    ("extra-tensor", "unexpected tensor"),
    ("bad-config", "unreadable model configuration"),
    ("nan", "NaN"),
])
def test_corrupt_files_are_refused_cleanly(kind, match, tmp_path):
    src = _valid(tmp_path)
    raw = src.read_bytes()
    bad = tmp_path / "bad.safetensors"
    with open(src, "rb") as f:
        from safetensors import safe_open
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "random":
        bad.write_bytes(np.random.default_rng(1).bytes(4096))
    elif kind == "truncated":
        bad.write_bytes(raw[: len(raw) - 17])
    elif kind == "pickle":
        import pickle
        bad.write_bytes(pickle.dumps({"W": [1, 2, 3]}))
    else:
        if kind == "foreign":
            meta = {"format": "pt"}
        elif kind == "version":
            meta["format_version"] = "99"
        elif kind == "bad-shape":
            tensors["model.W"] = torch.zeros(N_VISIBLE, 4)
        elif kind == "huge-declared":
            cfg = json.loads(meta["config"])
            cfg["params"]["n_hidden"] = 10 ** 9
            meta["config"] = json.dumps(cfg)
        elif kind == "extra-tensor":
            tensors["evil"] = torch.zeros(1)
        elif kind == "bad-config":
            meta["config"] = "{not json"
        elif kind == "nan":
            tensors["model.W"] = tensors["model.W"].clone()
            tensors["model.W"][0, 0] = float("nan")
        save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(ValueError, match=match):
        hm.load(bad)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        hm.load(tmp_path / "nope.safetensors")


def test_callable_optimizer_cannot_be_saved(tmp_path):
    est = hm.RBM(n_hidden=3, epochs=1, optimizer=lambda p: torch.optim.SGD(p, lr=0.1)).fit(X)
    with pytest.raises(ValueError, match="a callable is code"):
        est.save(tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


def test_tensorboard_log_reads_back_with_expected_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    hm.RBM(n_hidden=4, epochs=3, random_state=0, persistent=True, log_dir=str(tmp_path / "tb")).fit(
        X[:50], X_val=X[50:])
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"histograms": 0, "images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/reconstruction_error", "train/pseudo_log_likelihood", "val/pseudo_log_likelihood",
            "metrics/free_energy_gap", "train/log_likelihood"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("train/reconstruction_error")] == [1, 2, 3]
    assert {"parameters/W", "parameters/hidden.bias", "updates/W", "hidden/activation_probability"} <= set(
        tags["histograms"])
    assert {"filters", "negative_particles"} <= set(tags["images"])  # 9 visible units: 3 x 3 images


def test_dbm_tensorboard_log_has_every_layer_and_the_particles(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    hm.DBM(n_hidden=(5, 3), epochs=2, n_particles=7, pretrain_params={"epochs": 1}, random_state=0,
           log_dir=str(tmp_path / "tb")).fit(X[:50], X_val=X[50:])
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"histograms": 0, "images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/reconstruction_error", "val/reconstruction_error"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("train/reconstruction_error")] == [1, 2]
    assert {"parameters/W.0", "parameters/W.1", "updates/W.0", "layer1/activation_probability",
            "layer2/activation_probability"} <= set(tags["histograms"])
    assert {"filters", "negative_particles"} <= set(tags["images"])


def test_random_stream_saved_on_another_kind_of_device_is_reseeded_reproducibly(tmp_path):
    """A CUDA generator's state (a seed and an offset, 16 bytes) cannot drive the CPU's generator:
    loading such a file on the CPU seeds a fresh stream from the saved bytes, the same on every load;
    a state that claims to be the CPU's but is not is still refused."""
    from safetensors import safe_open

    est = hm.RBM(n_hidden=N_HIDDEN, epochs=1, batch_size=5, random_state=0).fit(X)
    est.save(tmp_path / "cpu.safetensors")
    with safe_open(str(tmp_path / "cpu.safetensors"), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    assert json.loads(meta["config"])["rng_device"] == "cpu"
    tensors["rng"] = torch.arange(16, dtype=torch.uint8)  # what torch.Generator("cuda").get_state() looks like
    config = json.loads(meta["config"])
    save_file(tensors, tmp_path / "cuda.safetensors", metadata=dict(meta, config=json.dumps(dict(config, rng_device="cuda"))))
    a = hm.load(tmp_path / "cuda.safetensors").set_params(epochs=2, warm_start=True).fit(X)
    b = hm.load(tmp_path / "cuda.safetensors").set_params(epochs=2, warm_start=True).fit(X)
    np.testing.assert_array_equal(a.components_, b.components_)
    save_file(tensors, tmp_path / "bad.safetensors", metadata=meta)  # 16 bytes said to be a CPU state
    with pytest.raises(ValueError, match="invalid random generator state"):
        hm.load(tmp_path / "bad.safetensors")


@pytest.mark.parametrize("kind", ["shape", "nan", "missing"])
def test_a_corrupt_parameter_average_is_refused(kind, tmp_path):
    src = hm.RBM(n_hidden=3, epochs=1, random_state=0, ema_decay=0.9, centering=True).fit(X).save(
        tmp_path / "ema.safetensors")
    from safetensors import safe_open
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert "trainer.average.W" in tensors
    if kind == "shape":
        tensors["trainer.average.W"] = torch.zeros(N_VISIBLE, 3)
    elif kind == "nan":
        tensors["trainer.average.W"] = torch.full_like(tensors["trainer.average.W"], float("nan"))
    else:
        del tensors["trainer.average.hidden.bias"]
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="parameter average"):
        hm.load(tmp_path / "bad.safetensors")


@pytest.mark.parametrize("kind,match", [
    ("layer-sizes", "layer 1 has 4 visible units, the layer below gives it 5"),
    ("no-layers", "declares no layers"),
    ("bad-shape", "layers.1.model.W' has shape"),
    ("stray-tensor", "unexpected tensor 'layers.2.model.W'"),
    ("nan", "NaN"),
    ("layer-count", "n_hidden gives 3 layers, the file holds 2"),
    ("device", "device must be a torch device string"),  # found by the fuzzer: 'cpu' became '0pu'
])
def test_a_corrupt_dbn_file_is_refused(kind, match, tmp_path):
    src = hm.DBN(n_hidden=(5, 3), rbm_params={"epochs": 1}, random_state=0).fit(X).save(tmp_path / "dbn.safetensors")
    from safetensors import safe_open
    with safe_open(str(src), "pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    if kind == "layer-sizes":
        cfg["layers"][1]["n_features_in"] = 4
    elif kind == "no-layers":
        cfg["layers"] = []
    elif kind == "bad-shape":
        tensors["layers.1.model.W"] = torch.zeros(5, 4)
    elif kind == "stray-tensor":
        tensors["layers.2.model.W"] = torch.zeros(3, 2)
    elif kind == "nan":
        tensors["layers.0.model.W"] = tensors["layers.0.model.W"].clone()
        tensors["layers.0.model.W"][1, 2] = float("nan")
    elif kind == "layer-count":
        cfg["params"]["n_hidden"] = [5, 3, 2]
    elif kind == "device":
        cfg["params"]["device"] = "0pu"
    meta["config"] = json.dumps(cfg)
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=match):
        hm.load(tmp_path / "bad.safetensors")


_STRUCTURE_EDITS = {  # configurations of the wrong shape: each must be a ValueError, never another exception
    "params-a-list": lambda c: c.__setitem__("params", []),
    "params-missing": lambda c: c.pop("params"),
    "units-missing": lambda c: (c["layers"][0] if "layers" in c else c).pop("units"),
    "layer-params-a-list": lambda c: (c["layers"][0] if "layers" in c else c).__setitem__("params", []),
    "trainer-an-int": lambda c: (c["layers"][0] if "layers" in c else c).__setitem__("trainer", 5),
    "n-features-a-string": lambda c: c.__setitem__("n_features_in", str(c["n_features_in"])),
    "unknown-parameter": lambda c: c["params"].__setitem__("zzz", 1),
}


@pytest.mark.parametrize("edit", list(_STRUCTURE_EDITS))
@pytest.mark.parametrize("model", ["rbm", "dbn"])
def test_configurations_of_the_wrong_structure_are_value_errors(model, edit, tmp_path):
    est = (hm.RBM(n_hidden=5, epochs=1, persistent=True, random_state=0) if model == "rbm" else
           hm.DBN(n_hidden=(5, 3), rbm_params={"epochs": 1, "persistent": True}, random_state=0))
    src = est.fit(X).save(tmp_path / "m.safetensors")
    from safetensors import safe_open
    with safe_open(str(src), "pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    _STRUCTURE_EDITS[edit](cfg)
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=dict(meta, config=json.dumps(cfg)))
    with pytest.raises(ValueError):
        hm.load(tmp_path / "bad.safetensors")
