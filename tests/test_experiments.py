"""The published-experiment reproductions in quick mode on real MNIST (skipped without the data)."""
import json
import math
import os

import numpy as np
import pytest
import torch

from harmonium import cli
from harmonium.experiments import EXPERIMENTS, machine_info, run
from harmonium.experiments._common import ConfigError


def _mnist_dir():
    root = os.environ.get("HARMONIUM_DATA")
    if not root:
        pytest.skip("HARMONIUM_DATA is not set: the experiments need real MNIST")
    from harmonium.datasets import load_mnist

    try:
        load_mnist(root, download=False)
    except (OSError, ValueError) as e:
        pytest.skip(f"MNIST is not available under {root}: {e}")
    return root


def _finite_numbers(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _finite_numbers(v)
    elif isinstance(x, list):
        for v in x:
            yield from _finite_numbers(v)
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield x


def test_registry():
    assert {"rbm-mnist", "rbm-mnist-likelihood", "dbm-mnist", "grbm-patches", "movielens"} <= set(EXPERIMENTS)


def test_machine_info_names_the_cpu_and_its_kernels():
    info = machine_info("cpu")
    assert info["device"] == "cpu" and info["cpu"] and info["cpu_count"] >= 1 and info["platform"]
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert json.loads(json.dumps(info)) == info


def test_rbm_mnist_quick(tmp_path):
    data = _mnist_dir()
    res = run("rbm-mnist", tmp_path, quick=True, data_dir=data, seed=0)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["experiment"] == "rbm-mnist" and saved["quick"] is True
    assert (tmp_path / "filters.png").stat().st_size > 0 and (tmp_path / "samples.png").stat().st_size > 0
    assert all(math.isfinite(v) for v in _finite_numbers(saved["results"]))
    r = res["results"]
    for key in ("logistic_regression", "linear_svm", "knn"):
        assert 0.0 <= r[key]["test_error"] <= 100.0
        assert r[key]["test_error"] < 60.0  # far better than chance (90 %) even on 1800 rows
    assert [row["n_labels"] for row in r["few_labels"]] == [100, 1000]
    sel = r["rbm_selection"]  # the RBM epoch chosen on the validation rows
    assert set(map(str, sel["val_error_by_epoch"])) == {"1", "2"} and sel["epochs"] in (1, 2)
    for row in r["few_labels"]:
        assert 0.0 <= row["pretrained_accuracy"] <= 100.0 and 0.0 <= row["random_accuracy"] <= 100.0
    assert saved["wall_time_s"] > 0 and saved["torch_version"]
    # the machine a run is reproducible on: the CPU and the vector instructions torch used there
    assert saved["cpu"] and saved["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    # again from the saved RBM: no training, the same features, so the same linear classifiers
    again = run("rbm-mnist", tmp_path / "again", quick=True, data_dir=data, seed=0,
                config={"rbm_file": str(tmp_path / "rbm.safetensors"), "few_labels": (100,),
                        "few_label_repeats": {"100": 3}})
    assert again["results"]["rbm_selection"]["rbm_file"].endswith("rbm.safetensors")
    assert "rbm_training" not in again["times_s"]
    assert again["results"]["logistic_regression"]["test_error"] == r["logistic_regression"]["test_error"]
    # three draws of 100 labelled rows: the first is the single run's, the row holds their mean and sd
    row, first = again["results"]["few_labels"][0], r["few_labels"][0]
    assert row["repeats"] == 3 and len(row["draws"]) == 3
    for kind in ("pretrained", "random"):
        acc = [d[f"{kind}_accuracy"] for d in row["draws"]]
        assert acc[0] == first[f"{kind}_accuracy"]
        assert row[f"{kind}_accuracy"] == pytest.approx(np.mean(acc))
        assert row[f"{kind}_sd"] == pytest.approx(np.std(acc, ddof=1))
    gains = [d["pretrained_accuracy"] - d["random_accuracy"] for d in row["draws"]]
    assert row["gain"] == pytest.approx(np.mean(gains)) and row["draws_with_positive_gain"] == sum(g > 0 for g in gains)
    assert len({d["pretrained_accuracy"] for d in row["draws"]}) > 1  # different rows, different networks


@pytest.mark.parametrize("repeats", [0, -1, 1.5, True, {"100": "ten"}, {"a hundred": 2}])
def test_few_label_repeats_bad_values_refused_before_training(tmp_path, repeats):
    with pytest.raises(ConfigError, match="few_label_repeats"):
        run("rbm-mnist", tmp_path, quick=True, data_dir=tmp_path, config={"few_label_repeats": repeats})


def test_rbm_mnist_likelihood_quick(tmp_path):
    data = _mnist_dir()
    res = run("rbm-mnist-likelihood", tmp_path, quick=True, data_dir=data, seed=0)
    saved = json.loads((tmp_path / "results.json").read_text())
    r = saved["results"]
    assert all(math.isfinite(v) for v in _finite_numbers(r))
    lo, hi = r["log_z_ais_interval"]
    assert lo <= r["log_z_ais"] <= hi
    assert r["log_z_gap"] == r["log_z_reverse_ais"] - r["log_z_ais"] and 0 < r["ais_ess"] <= 100
    rlo, rhi = r["log_z_reverse_ais_interval"]
    assert rlo <= r["log_z_reverse_ais"] <= rhi
    assert abs(r["log_z_ais"] - r["log_z_reverse_ais"]) < 2.0  # the two estimates agree on a small model
    assert r["test_log_likelihood_ais"] < 0 and saved["config"]["betas"] == 1000
    assert res["results"]["log_z_ais"] == r["log_z_ais"]
    assert (tmp_path / "filters.png").exists() and (tmp_path / "samples.png").exists()
    # CD, PCD and centred PCD, each scored the same way; the top-level keys are the CD model's
    assert [v["algorithm"] for v in r["variants"].values()] == ["CD-1", "PCD-1", "centred PCD-1"]
    assert r["variants"]["cd25"]["log_z_ais"] == r["log_z_ais"]
    for name, v in r["variants"].items():
        assert abs(v["log_z_gap"]) < 2.0 and v["test_log_likelihood_ais"] < 0
        assert (tmp_path / f"rbm-{name}.safetensors").exists()


def test_rbm_mnist_likelihood_subset_of_variants(tmp_path):
    data = _mnist_dir()
    res = run("rbm-mnist-likelihood", tmp_path, quick=True, data_dir=data, seed=0, only=("pcd",))
    assert list(res["results"]["variants"]) == ["pcd"] and res["results"]["algorithm"] == "PCD-1"
    with pytest.raises(ValueError, match="unknown variants"):
        run("rbm-mnist-likelihood", tmp_path, quick=True, data_dir=data, only=("pdc",))


def test_rbm_mnist_likelihood_stochastic_binarisation(tmp_path):
    """Trained on fresh draws from the grey levels and scored on one fixed draw (the paper's protocol):
    other numbers than the thresholded run's, the same trust checks, the data named in the config."""
    data = _mnist_dir()
    kw = dict(quick=True, data_dir=data, seed=0, only=("pcd",))
    thr = run("rbm-mnist-likelihood", tmp_path / "t", **kw)["results"]
    res = run("rbm-mnist-likelihood", tmp_path / "s", **kw, config={"binarization": "stochastic"})
    r = res["results"]
    assert res["config"]["data"].startswith("MNIST grey levels")
    from harmonium.io import load

    assert load(tmp_path / "s" / "rbm-pcd.safetensors").sample_data is True
    assert load(tmp_path / "t" / "rbm-pcd.safetensors").sample_data is False
    assert r["test_log_likelihood_ais"] < 0 and abs(r["log_z_gap"]) < 2.0
    assert r["test_log_likelihood_ais"] != thr["test_log_likelihood_ais"] and r["log_z_ais"] != thr["log_z_ais"]
    with pytest.raises(ValueError, match="binarization must be"):
        run("rbm-mnist-likelihood", tmp_path / "bad", **kw, config={"binarization": "Stochastic"})


def test_scored_digits_fix_one_draw_per_split():
    """The fixed stochastic binarisation: reproducible, 0/1, a prefix of the rows draws the prefix of the
    draw (the DBM's ELBO takes the first rows), and test and training rows use different seeds."""
    from harmonium.experiments._common import scored_digits

    P = np.random.default_rng(3).random((11, 7)).astype(np.float32)
    te, tr = scored_digits(P, P, stochastic=True)
    assert set(np.unique(te)) <= {0.0, 1.0} and te.dtype == np.float32
    np.testing.assert_array_equal(scored_digits(P[:5], P[:5], True)[0], te[:5])
    assert not np.array_equal(te, tr)
    assert scored_digits(P, P, stochastic=False)[0] is P


def test_train_rbm_passes_the_negative_phase_options():
    """The experiments' RBM gets the chains, tempering and optimizer a configuration names (a sweep with
    parallel tempering must not silently train PCD, one with Adam not silently SGD)."""
    from harmonium.experiments._common import train_rbm

    X = (np.random.default_rng(5).random((11, 7)) > 0.5).astype(np.float32)
    cfg = dict(n_hidden=5, learning_rate=0.01, momentum=0.5, epochs=1, batch_size=11, k=1, persistent=True,
               l2=0.0, n_chains=13, n_temperatures=3, centering=True, ema_decay=0.99, optimizer="adam")
    rbm = train_rbm(cfg, X, X, 0, True, ("reconstruction_error",))
    assert (rbm.n_chains, rbm.n_temperatures, rbm.centering, rbm.ema_decay, rbm.optimizer) == (13, 3, True, 0.99, "adam")
    assert 0 <= rbm.history_["swap_rate_min"][-1] <= rbm.history_["swap_rate"][-1] <= 1


def test_likelihood_variants_are_named_by_their_algorithm():
    from harmonium.experiments.rbm_mnist_likelihood import FULL, _algorithm

    assert [_algorithm(v) for v in FULL["variants"].values()] == ["CD-25, sampled visible states", "PCD-1",
                                                                 "centred PCD-1"]
    assert _algorithm(dict(k=[1, 13, 25], persistent=False)) == "CD-1..25"
    assert _algorithm(dict(k=1, persistent=True, centering=True, n_temperatures=7)) == "centred PT-1 (7 temperatures)"
    assert _algorithm(dict(k=1, persistent=True, centering=True, ema_decay=0.999)) == "centred PCD-1, averaged (0.999)"
    assert _algorithm(dict(k=1, persistent=True, optimizer="adam", ema_decay=0.999)) == "PCD-1, Adam, averaged (0.999)"
    assert _algorithm(dict(k=25, persistent=False, sample_v_states=False)) == "CD-25, visible means"


def test_config_replaces_preset_entries_and_unknown_keys_are_refused(tmp_path, capsys):
    data = _mnist_dir()
    res = run("rbm-mnist-likelihood", tmp_path, quick=True, data_dir=data, only=("pcd",),
              config={"n_hidden": 7, "betas": 300})
    assert res["config"]["n_hidden"] == 7 and res["results"]["betas"] == 300
    assert res["config"]["device"] == "cpu" and res["device"] == "cpu"
    with pytest.raises(ValueError, match=r"unknown configuration keys \['n_hiden'\]"):
        run("rbm-mnist-likelihood", tmp_path, quick=True, data_dir=data, config={"n_hiden": 7})
    # the command line: --config as JSON, with the same refusal, and a device this machine lacks
    assert cli.main(["experiment", "grbm-patches", "--quick", "--out", str(tmp_path / "g"),
                     "--config", '{"n_hiden": 3}']) == 2
    assert "unknown configuration keys ['n_hiden']" in capsys.readouterr().err
    assert cli.main(["experiment", "grbm-patches", "--quick", "--config", "[1, 2]"]) == 2
    assert "JSON object" in capsys.readouterr().err
    assert cli.main(["experiment", "grbm-patches", "--quick", "--config", "{epochs: 2}"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert cli.main(["experiment", "grbm-patches", "--quick", "--device", "no-such-device"]) == 2
    assert "invalid --device" in capsys.readouterr().err


def test_cli_unknown_experiment(capsys):
    assert cli.main(["experiment", "no-such-thing"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'no-such-thing'" in err
    assert "rbm-mnist" in err and "rbm-mnist-likelihood" in err


def test_cli_experiment_quick(tmp_path, capsys):
    data = _mnist_dir()
    out = tmp_path / "lik"
    assert cli.main(["experiment", "rbm-mnist-likelihood", "--quick", "--out", str(out), "--data-dir", data]) == 0
    text = capsys.readouterr().out
    assert "test log-likelihood" in text and "results.json" in text
    assert "data: MNIST binarised at 0.5" in text  # which digits the likelihoods are of
    assert (out / "results.json").exists()


def test_cli_summary_names_the_rbm_epoch_kept(tmp_path, capsys, monkeypatch):
    """rbm-mnist keeps the RBM of the epoch validation chose, which may not be the last one trained."""
    def fake(out, quick, data_dir, seed, device, config=None):
        r = {"rbm_selection": {"val_error_by_epoch": {30: 2.62, 60: 2.34, 90: 2.08, 120: 2.08}, "epochs": 90},
             "logistic_regression": {"test_error": 1.67}}
        return {"config": {"n_hidden": 1024, "epochs": 120}, "results": r}

    monkeypatch.setitem(EXPERIMENTS, "rbm-mnist", fake)
    assert cli.main(["experiment", "rbm-mnist", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "RBM 784-1024, 120 epochs; kept: epoch 90 (validation error of its logistic regression 2.08 %)" in text
    assert "logistic regression" in text and "1.67 %" in text


def test_cli_summary_of_an_open_ais_interval(tmp_path, capsys, monkeypatch):
    """An AIS estimate resting on a few heavy weights has an interval open below (-inf): results.json
    spells it "-inf" (strict JSON), the returned results keep the float and the summary prints it
    (a full DBM run once crashed here after writing its results)."""
    ninf = float("-inf")

    def fake(out, quick, data_dir, seed, device, config=None):
        r = {"log_z_ais": 1401.48, "log_z_ais_interval": [ninf, 1402.24], "log_z_reverse_ais": 1401.21,
             "betas_check": 100000, "log_z_ais_check": 1401.43, "test_elbo": np.float64(-84.33),
             "elbo_rows": 10000}
        return {"config": {"n_hidden": [512, 1024], "epochs": 30, "decay_epochs": 30, "betas": 20000},
                "results": r}

    monkeypatch.setitem(EXPERIMENTS, "dbm-mnist", fake)
    assert cli.main(["experiment", "dbm-mnist", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "AIS 1401.480 (-inf, 1402.240)" in text and "average test ELBO -84.33 nats" in text
    assert "784-512-1024, 60 joint epochs" in text  # the decaying epochs count too
    saved = json.loads((tmp_path / "results.json").read_text(), parse_constant=pytest.fail)
    assert saved["results"]["log_z_ais_interval"] == ["-inf", 1402.24]
    res = run("dbm-mnist", tmp_path, seed=0)
    assert res["results"]["log_z_ais_interval"][0] == ninf and type(res["results"]["test_elbo"]) is float
    # without the check with more betas (``betas_check: null``) the summary leaves it out
    monkeypatch.setitem(EXPERIMENTS, "dbm-mnist", lambda *a, **k: {
        **fake(*a, **k), "results": {k: v for k, v in fake(*a, **k)["results"].items()
                                     if k not in ("betas_check", "log_z_ais_check")}})
    assert cli.main(["experiment", "dbm-mnist", "--out", str(tmp_path / "nocheck")]) == 0
    text = capsys.readouterr().out
    assert "reverse AIS 1401.210" in text and "AIS with" not in text


def test_cli_missing_data(tmp_path, capsys):
    assert cli.main(["experiment", "rbm-mnist", "--quick", "--out", str(tmp_path / "o"),
                     "--data-dir", str(tmp_path / "nothing")]) == 2
    assert "error" in capsys.readouterr().err


def test_grbm_patches_quick(tmp_path, capsys):
    """No data folder needed (scikit-learn's bundled photographs).  The quick model has 16 hidden
    units, so AIS and reverse AIS are checked against the exact log Z."""
    assert cli.main(["experiment", "grbm-patches", "--quick", "--out", str(tmp_path), "--threads", "1"]) == 0
    assert "RBM - Gaussian" in capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    r = saved["results"]
    assert saved["config"]["dims"] == 64 and saved["config"]["n_test"] == 1000
    assert r["log_z_ais_interval"][0] - 0.05 <= r["log_z_exact"] <= r["log_z_ais_interval"][1] + 0.05
    assert abs(r["log_z_reverse_ais"] - r["log_z_exact"]) < 0.1
    assert r["test_log_likelihood_pixels"] == pytest.approx(r["test_log_likelihood_whitened"] + r["log_det_whitening"])
    assert r["gaussian_test_log_likelihood_whitened"] > -100  # whitened 64-d data: about -81
    assert all(math.isfinite(x) for x in _finite_numbers(r))
    for name in ("filters.png", "samples.png", "test_patches.png", "rbm.safetensors"):
        assert (tmp_path / name).exists(), name


def test_dbm_mnist_quick(tmp_path):
    data = _mnist_dir()
    res = run("dbm-mnist", tmp_path, quick=True, data_dir=data)
    r = res["results"]
    assert len(res["dbm_history"]["epoch"]) == 4  # 2 epochs at the preset's rate, 2 decaying to the final one
    assert r["test_elbo"] < 0 and r["train_elbo"] < 0
    lo, hi = r["log_z_ais_interval"]
    assert lo <= r["log_z_ais"] <= hi and r["ais_ess"] > 1
    # the check with more betas estimates the same log Z (a small model anneals easily)
    assert r["betas_check"] > res["config"]["betas"] and abs(r["log_z_ais_check"] - r["log_z_ais"]) < 1.0
    assert [row["n_labels"] for row in r["few_labels"]] == [100, 1000]
    # importance sampling from the particles: a lower bound that a small model's forward AIS is above
    assert r["log_z_lower_bound_999"] < r["log_z_importance"] <= r["log_z_ais"] + 1.0
    assert not r["forward_ais_below_bound"] and r["test_elbo_upper_bound"] == r["test_elbo"]
    for name in ("filters.png", "samples.png", "samples-random-starts.png", "particles.gif", "dbm.safetensors",
                 "results.json"):
        assert (tmp_path / name).exists(), name
    # the saved DBM evaluated again, without training: the same forward AIS
    again = run("dbm-mnist", tmp_path / "again", quick=True, data_dir=data,
                config={"dbm_file": str(tmp_path / "dbm.safetensors"), "betas_check": None, "few_labels": [100]})
    assert again["results"]["log_z_ais"] == pytest.approx(r["log_z_ais"], abs=1e-9)
    assert "log_z_ais_check" not in again["results"] and "dbm_training" not in again["times_s"]
    # the same DBM scored on a stochastic binarisation of the digits: log Z estimated again, other digits
    noisy = run("dbm-mnist", tmp_path / "noisy", quick=True, data_dir=data,
                config={"dbm_file": str(tmp_path / "dbm.safetensors"), "betas_check": None, "few_labels": [],
                        "binarization": "stochastic"})
    assert noisy["results"]["log_z_ais"] == pytest.approx(r["log_z_ais"], abs=0.5)  # base rate from the grey levels
    assert math.isfinite(noisy["results"]["test_elbo"]) and noisy["results"]["test_elbo"] != r["test_elbo"]
    assert noisy["config"]["data"].startswith("MNIST grey levels")
    with pytest.raises(ValueError, match="binarization must be"):
        run("dbm-mnist", tmp_path / "bad", quick=True, data_dir=data, config={"binarization": "otsu"})
