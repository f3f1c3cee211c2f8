"""``harmonium evaluate`` and the command line on DBM model files."""

import json

import numpy as np
import pytest

import harmonium as hm
from harmonium import cli, estimate

from conftest import bars_and_stripes

BARS = np.tile(bars_and_stripes(3), (5, 1))


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "bars.txt"
    np.savetxt(path, BARS, fmt="%g")
    return path


def test_evaluate_rbm_reports_both_estimates_close_to_exact(tmp_path, data_file, capsys):
    model = hm.RBM(n_hidden=6, epochs=30, random_state=0, batch_size=14, learning_rate=0.05).fit(BARS)
    model.save(tmp_path / "m.safetensors")
    code, out, err = run(["evaluate", tmp_path / "m.safetensors", data_file, "--betas", 2000, "--json"], capsys)
    assert code == 0, err
    r = json.loads(out)
    exact = estimate.exact_log_partition(model)
    assert abs(r["log_z"] - exact) < 0.1 and abs(r["reverse_log_z"] - exact) < 0.1
    ll = float(estimate.exact_log_likelihood(model, BARS).mean())
    assert abs(r["log_likelihood"] - ll) < 0.1
    code, out, _ = run(["evaluate", tmp_path / "m.safetensors", data_file, "--betas", 500], capsys)
    assert code == 0 and "reverse AIS" in out and "average log-likelihood" in out


def test_dbm_model_files_on_the_command_line(tmp_path, data_file, capsys):
    dbm = hm.DBM(n_hidden=(5, 3), epochs=3, pretrain_params={"epochs": 3}, random_state=0, batch_size=14).fit(BARS)
    dbm.save(tmp_path / "d.safetensors")
    code, out, err = run(["evaluate", tmp_path / "d.safetensors", data_file, "--betas", 1000, "--json"], capsys)
    assert code == 0, err
    r = json.loads(out)
    exact = estimate.exact_log_partition(dbm)
    assert abs(r["log_z"] - exact) < 0.15
    assert r["elbo"] <= float(estimate.exact_log_likelihood(dbm, BARS).mean()) + 0.15
    code, out, _ = run(["info", tmp_path / "d.safetensors"], capsys)
    assert code == 0 and "layers: 9 bernoulli - 5 bernoulli - 3 bernoulli" in out
    code, out, _ = run(["transform", tmp_path / "d.safetensors", data_file], capsys)
    assert code == 0 and len(out.splitlines()) == len(BARS)
    code, _, err = run(["run-hidden", tmp_path / "d.safetensors", data_file], capsys)
    assert code == 2 and "works on RBM model files" in err


def test_recommend_lists_unrated_items_best_first(tmp_path, capsys):
    from harmonium.collaborative import RatingsRBM
    rng = np.random.default_rng(0)
    users, items = np.meshgrid(np.arange(1, 12), np.arange(1, 14), indexing="ij")
    X = np.stack([users.ravel(), items.ravel(), rng.integers(1, 6, users.size)], 1)
    X = X[rng.random(len(X)) < 0.6]
    m = RatingsRBM(n_hidden=4, epochs=3, random_state=0).fit(X)
    m.save(tmp_path / "r.safetensors")
    code, out, err = run(["recommend", tmp_path / "r.safetensors", "--user", 1, "-n", 3,
                          "--data-dir", tmp_path / "none"], capsys)
    assert code == 0, err
    rows = out.splitlines()[1:]
    assert len(rows) == 3
    ids = [int(r.split()[1]) for r in rows]
    assert ids == [item for item, _ in m.recommend(1, n=3)]
    assert not set(ids) & set(X[X[:, 0] == 1, 1].tolist())
