"""FineTunedClassifier: networks built from RBMs, DBNs and DBMs, trained on scikit-learn's digits.

The digits are scaled to [0, 1] and binarised at 0.5, which loses information: on these splits a
64-unit sigmoid MLP trained from scratch (scikit-learn's MLPClassifier included) reaches about
0.92-0.94 and an RBF SVM about 0.95, so the accuracy thresholds below sit close to what the data
allow; the split and hyperparameters were chosen so that they hold with a margin of about 0.02
across fine-tuning seeds.
"""

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import train_test_split

import harmonium as hm
from harmonium.finetune import FineTunedClassifier

# stronger than the defaults (lr 1e-3, no dropout), which underfit 1350 rows in 100 epochs
GOOD = dict(learning_rate=3e-3, dropout=0.2, patience=20)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0 > 0.5).astype(np.float32)
    return train_test_split(X, y, test_size=0.25, random_state=4, stratify=y)


@pytest.fixture(scope="module")
def rbm(digits):
    Xtr = digits[0]
    return hm.RBM(n_hidden=64, epochs=10, random_state=0).fit(Xtr)


@pytest.fixture(scope="module")
def dbm(digits):
    return hm.DBM(n_hidden=(32, 16), epochs=2, pretrain_params={"epochs": 3}, random_state=0).fit(digits[0])


def state(est):
    return {k: v.detach().clone() for k, v in est.model_.state_dict().items()}


# ---------------------------------------------------------------------------- from an RBM
def test_rbm_fine_tuned_accuracy_and_pretrained_untouched(digits, rbm):
    Xtr, Xte, ytr, yte = digits
    before = state(rbm)
    clf = FineTunedClassifier(rbm, random_state=0, **GOOD).fit(Xtr, ytr)
    assert clf.score(Xte, yte) > 0.93
    after = state(rbm)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the network owns copies, not the RBM's tensors
    assert clf.network_.layers[0].weight.data_ptr() != rbm.model_.W.data_ptr()
    assert list(clf.classes_) == list(range(10)) and clf.n_features_in_ == 64
    h = clf.history_
    assert len(h["epoch"]) == len(h["train_loss"]) == len(h["val_loss"]) == len(h["val_accuracy"]) == clf.n_iter_
    assert 1 <= clf.best_epoch_ <= clf.n_iter_
    assert h["val_accuracy"][clf.best_epoch_ - 1] == max(h["val_accuracy"])
    assert h["train_loss"][-1] < h["train_loss"][0]
    proba = clf.predict_proba(Xte)
    assert proba.shape == (len(Xte), 10) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert np.array_equal(clf.predict(Xte), clf.classes_[proba.argmax(1)])


def test_rbm_network_is_the_rbm_before_training(digits, rbm):
    Xtr, _, ytr, _ = digits
    clf = FineTunedClassifier(rbm, epochs=0, random_state=0).fit(Xtr, ytr)
    layer = clf.network_.layers[0]
    assert torch.equal(layer.weight.detach(), rbm.model_.W.detach())
    assert torch.equal(layer.units.bias.detach(), rbm.model_.hidden.bias.detach())
    X = torch.as_tensor(Xtr[:50])
    h = clf.network_.hidden(X)
    assert len(h) == 1
    assert torch.allclose(h[0], torch.as_tensor(rbm.transform(Xtr[:50])), atol=1e-6)
    assert clf.history_["epoch"] == [] and clf.n_iter_ == 0


@pytest.mark.parametrize("kind", ["gaussian-visible", "centered", "softmax-hidden", "gaussian-hidden"])
def test_first_layer_computes_the_rbm_hidden_mean_for_other_unit_types(kind):
    rng = np.random.default_rng(0)
    X = (rng.random((60, 6)) < 0.4).astype(np.float64)
    y = np.arange(60) % 3
    kw = dict(n_hidden=4, epochs=2, random_state=0, dtype="float64", metrics=None)
    if kind == "gaussian-visible":
        X = rng.normal(size=(60, 6))
        est = hm.RBM(visible={"name": "gaussian", "sigma": [0.5, 0.8, 1.0, 1.2, 1.5, 2.0]},
                     learning_rate=0.01, **kw)
    elif kind == "centered":
        est = hm.RBM(centering=True, **kw)
    elif kind == "softmax-hidden":
        est = hm.RBM(hidden={"name": "softmax", "group_size": 2}, **kw)
    else:
        est = hm.RBM(hidden="gaussian", learning_rate=0.01, **kw)
    est.fit(X)
    clf = FineTunedClassifier(est, epochs=0, dtype="float64").fit(X, y)
    h = clf.network_.hidden(torch.as_tensor(X))[0]
    assert torch.allclose(h, torch.as_tensor(est.transform(X)), atol=1e-10)
    clf.set_params(epochs=3).fit(X, y)  # and it trains
    assert clf.predict(X).shape == (60,)


# ---------------------------------------------------------------------------- from a DBN / DBM
def test_dbn_fine_tuned(digits):
    Xtr, Xte, ytr, yte = digits
    dbn = hm.DBN(n_hidden=(64, 32), rbm_params={"epochs": 5}, random_state=0).fit(Xtr)
    clf0 = FineTunedClassifier(dbn, epochs=0).fit(Xtr, ytr)
    assert [tuple(l.weight.shape) for l in clf0.network_.layers] == [(64, 64), (64, 32)]
    top = clf0.network_.hidden(torch.as_tensor(Xte))[-1]
    assert torch.allclose(top, torch.as_tensor(dbn.transform(Xte)), atol=1e-6)
    clf = FineTunedClassifier(dbn, random_state=0, **GOOD).fit(Xtr, ytr)
    assert clf.score(Xte, yte) > 0.85


# bigger pretrained models and dropout 0.5: the issue's >= 95 % on these binarised digits.  Measured
# over fine-tuning seeds 0-5 (one pretrained model each): DBN 0.962-0.978, DBM 0.960-0.969; random
# initialisation of the same 256-256 network 0.947-0.951.
STRONG = dict(learning_rate=3e-3, dropout=0.5, patience=30, epochs=300)


def test_dbn_fine_tuned_reaches_95_percent(digits):
    Xtr, Xte, ytr, yte = digits
    dbn = hm.DBN(n_hidden=(256, 256), rbm_params={"epochs": 30, "learning_rate": 0.05, "batch_size": 10},
                 random_state=0).fit(Xtr)
    assert FineTunedClassifier(dbn, random_state=0, **STRONG).fit(Xtr, ytr).score(Xte, yte) >= 0.95


def test_dbm_fine_tuned_reaches_95_percent(digits):
    Xtr, Xte, ytr, yte = digits
    dbm = hm.DBM(n_hidden=(256, 128), epochs=10, batch_size=20, learning_rate=0.005, max_mf_updates=10,
                 pretrain_params={"epochs": 20}, random_state=0).fit(Xtr)
    clf = FineTunedClassifier(dbm, random_state=0, **STRONG).fit(Xtr, ytr)
    assert clf.network_.n_extra > 0  # the input is augmented with the top layer's posterior
    assert clf.score(Xte, yte) >= 0.95


def test_dbm_input_augmentation(digits, dbm):
    Xtr, Xte, ytr, _ = digits
    clf = FineTunedClassifier(dbm, epochs=0, random_state=0).fit(Xtr, ytr)
    net = clf.network_
    W0, W1 = (w.detach() for w in dbm.model_.W)
    # layer 1 gets [v, q_2] through [W_0; W_1^T], layer 2 gets h_1 through W_1
    assert tuple(net.layers[0].weight.shape) == (64 + 16, 32)
    assert torch.equal(net.layers[0].weight.detach(), torch.cat([W0, W1.T]))
    assert torch.equal(net.layers[1].weight.detach(), W1)
    assert net.extra_sizes == [16, 0]
    X = torch.as_tensor(Xte[:40])
    q1, q2 = (torch.as_tensor(q) for q in dbm.mean_field(Xte[:40]))
    assert torch.allclose(net.augment(X), q2, atol=1e-6)
    # at the mean-field fixed point the network computes the posteriors themselves
    h1, h2 = net.hidden(X)
    assert torch.allclose(h1, q1, atol=1e-4) and torch.allclose(h2, q2, atol=1e-4)
    assert net.output.weight.shape == (16, 10)


def test_deeper_dbm_network_reproduces_the_mean_field():
    """Three hidden layers: layer l gets [h_{l-1}, q_{l+1}] through [W_{l-1}; W_l^T], the top h_{L-1} W_{L-1}."""
    rng = np.random.default_rng(0)
    sizes = [7, 5, 4, 3]
    Ws = [rng.normal(scale=0.5, size=(a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(scale=0.5, size=n) for n in sizes]
    d = hm.DBM.from_arrays(Ws, bs, dtype="float64", max_mf_updates=500, mf_tol=1e-12)
    X = (rng.random((30, 7)) < 0.5).astype(np.float64)
    y = np.arange(30) % 2
    net = FineTunedClassifier(d, epochs=0, dtype="float64").fit(X, y).network_
    assert [tuple(l.weight.shape) for l in net.layers] == [(7 + 4, 5), (5 + 3, 4), (4, 3)]
    assert net.extra_sizes == [4, 3, 0]
    q = [torch.as_tensor(m) for m in d.mean_field(X)]
    assert torch.allclose(net.augment(torch.as_tensor(X)), torch.cat([q[1], q[2]], 1), atol=1e-12)
    for h, m in zip(net.hidden(torch.as_tensor(X)), q):
        assert torch.allclose(h, m, atol=1e-9)


def test_dbm_fine_tuned(digits, dbm):
    Xtr, Xte, ytr, yte = digits
    before = state(dbm)
    clf = FineTunedClassifier(dbm, random_state=0, learning_rate=1e-2, batch_size=32).fit(Xtr, ytr)
    assert clf.score(Xte, yte) > 0.85
    assert all(torch.equal(v, state(dbm)[k]) for k, v in before.items())


def test_one_layer_dbm_is_like_an_rbm(digits):
    Xtr, _, ytr, _ = digits
    d = hm.DBM(n_hidden=16, epochs=1, pretrain_params={"epochs": 1}, random_state=0).fit(Xtr[:300])
    clf = FineTunedClassifier(d, epochs=0, random_state=0).fit(Xtr[:300], ytr[:300])
    assert clf.network_.dbm is None and clf.network_.extra_sizes == [0]
    assert torch.equal(clf.network_.layers[0].weight.detach(), d.model_.W[0].detach())
    clf.set_params(epochs=2).fit(Xtr[:300], ytr[:300])
    assert clf.n_iter_ == 2


# ---------------------------------------------------------------------------- the baseline
def test_random_initialisation_baseline(digits):
    Xtr, Xte, ytr, yte = digits
    clf = FineTunedClassifier(hidden_layer_sizes=(64,), random_state=0, **GOOD).fit(Xtr, ytr)
    assert [tuple(l.weight.shape) for l in clf.network_.layers] == [(64, 64)]
    assert clf.score(Xte, yte) > 0.85
    deep = FineTunedClassifier(hidden_layer_sizes=(32, 16), epochs=3, random_state=0).fit(Xtr, ytr)
    assert [tuple(l.weight.shape) for l in deep.network_.layers] == [(64, 32), (32, 16)]
    w = FineTunedClassifier(hidden_layer_sizes=7, epochs=0, random_state=0).fit(Xtr, ytr).network_.layers[0].weight
    assert w.abs().max() <= 1 / 8 and w.std() > 0.02  # U(-1/sqrt(64), 1/sqrt(64))
    # no hidden layer: multinomial logistic regression
    lin = FineTunedClassifier(hidden_layer_sizes=(), lr_multipliers=[1.0], dropout=0.5, epochs=20,
                              learning_rate=0.01, random_state=0).fit(Xtr, ytr)
    assert len(lin.network_.layers) == 0 and lin.score(Xte, yte) > 0.8
    # few labels: ten per class still trains (stratified validation of one row per class)
    idx = np.concatenate([np.flatnonzero(ytr == c)[:10] for c in range(10)])
    few = FineTunedClassifier(hidden_layer_sizes=(16,), epochs=5, random_state=0).fit(Xtr[idx], ytr[idx])
    assert len(few.history_["val_accuracy"]) == few.n_iter_


def test_hidden_layer_sizes_with_pretrained(digits, rbm):
    Xtr, _, ytr, _ = digits
    FineTunedClassifier(rbm, hidden_layer_sizes=(64,), epochs=1).fit(Xtr, ytr)
    FineTunedClassifier(rbm, hidden_layer_sizes=64, epochs=1).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="does not match the pretrained RBM"):
        FineTunedClassifier(rbm, hidden_layer_sizes=(32,)).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="hidden_layer_sizes is required"):
        FineTunedClassifier().fit(Xtr, ytr)


# ---------------------------------------------------------------------------- the optimizer
def test_lr_multipliers_make_parameter_groups(digits, rbm):
    Xtr, _, ytr, _ = digits
    clf = FineTunedClassifier(rbm, lr_multipliers=(0.1, 1.0), learning_rate=0.01, l2=1e-4, epochs=1).fit(Xtr, ytr)
    groups = {g["name"]: g for g in clf.optimizer_.param_groups}
    assert set(groups) == {"layer0.weight", "layer0.bias", "output.weight", "output.bias"}
    assert groups["layer0.weight"]["lr"] == pytest.approx(0.001) and groups["layer0.bias"]["lr"] == pytest.approx(0.001)
    assert groups["output.weight"]["lr"] == pytest.approx(0.01) and groups["output.bias"]["lr"] == pytest.approx(0.01)
    assert groups["layer0.weight"]["weight_decay"] == 1e-4 and groups["layer0.bias"]["weight_decay"] == 0
    net = clf.network_
    assert groups["layer0.weight"]["params"][0] is net.layers[0].weight
    assert groups["layer0.bias"]["params"][0] is net.layers[0].units.bias
    assert groups["output.weight"]["params"][0] is net.output.weight
    # every trainable parameter is in exactly one group
    in_groups = [p for g in clf.optimizer_.param_groups for p in g["params"]]
    assert len(in_groups) == len({id(p) for p in in_groups}) == sum(p.requires_grad for p in net.parameters())
    # a multiplier of 0 freezes that layer
    frozen = FineTunedClassifier(rbm, lr_multipliers=[0.0, 1.0], epochs=2, optimizer="sgd",
                                 early_stopping=False).fit(Xtr, ytr)
    assert torch.equal(frozen.network_.layers[0].weight.detach(), rbm.model_.W.detach())
    sgd = FineTunedClassifier(rbm, optimizer="sgd", epochs=1).fit(Xtr, ytr)
    assert isinstance(sgd.optimizer_, torch.optim.SGD) and sgd.optimizer_.param_groups[0]["momentum"] == 0.9
    with pytest.raises(ValueError, match="one entry per layer"):
        FineTunedClassifier(rbm, lr_multipliers=(0.1,)).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="non-negative"):
        FineTunedClassifier(rbm, lr_multipliers=(-1.0, 1.0)).fit(Xtr, ytr)


def test_without_validation_trains_all_epochs(digits, rbm):
    Xtr, _, ytr, _ = digits
    for kw in (dict(early_stopping=False), dict(validation_fraction=0.0)):
        clf = FineTunedClassifier(rbm, epochs=4, random_state=0, **kw).fit(Xtr, ytr)
        assert clf.n_iter_ == 4 and clf.best_epoch_ == 4
        assert set(clf.history_) == {"epoch", "train_loss", "lr_factor"}
        assert not hasattr(clf, "refit_history_")


def test_ema_keeps_the_average_of_the_raw_weights(digits, rbm):
    """One update per epoch: the kept network is d_t a + (1 - d_t) theta_t over the raw trajectory
    (the same run without averaging, which averaging does not change), d_t = min(decay, (1+t)/(10+t))."""
    Xtr, Xte, ytr, _ = digits
    kw = dict(batch_size=len(Xtr), learning_rate=0.05, dropout=0.2, early_stopping=False, random_state=5)
    raw = [FineTunedClassifier(rbm, epochs=e, **kw).fit(Xtr, ytr).network_ for e in range(4)]
    for decay in (0.2, 0.9):
        avg = FineTunedClassifier(rbm, epochs=3, ema_decay=decay, **kw).fit(Xtr, ytr)
        names = [n for n, q in avg.network_.named_parameters() if q.requires_grad]
        expect = {n: dict(raw[0].named_parameters())[n].detach().double() for n in names}
        for t in range(3):
            d = min(decay, (1 + t) / (10 + t))
            expect = {n: d * expect[n] + (1 - d) * dict(raw[t + 1].named_parameters())[n].detach().double()
                      for n in names}
        got = dict(avg.network_.named_parameters())
        for n in names:
            torch.testing.assert_close(got[n].detach().double(), expect[n], rtol=1e-5, atol=1e-6)
    # with a validation split the averaged weights are the ones scored and kept
    a = FineTunedClassifier(rbm, epochs=6, ema_decay=0.9, random_state=5, learning_rate=0.05).fit(Xtr, ytr)
    b = FineTunedClassifier(rbm, epochs=6, random_state=5, learning_rate=0.05).fit(Xtr, ytr)
    assert a.history_["train_loss"] == b.history_["train_loss"] and a.history_["val_loss"] != b.history_["val_loss"]


def test_refit_trains_every_row_for_the_validated_epochs(digits, rbm):
    """With constant learning rates the refit is exactly the fit without validation for best_epoch_
    epochs; with halving it replays the validated run's learning rates epoch by epoch."""
    Xtr, Xte, ytr, _ = digits
    kw = dict(learning_rate=0.05, patience=3, epochs=30, dropout=0.2, random_state=3)
    clf = FineTunedClassifier(rbm, refit=True, **kw).fit(Xtr, ytr)
    assert 1 <= clf.best_epoch_ < clf.n_iter_ < 30
    assert clf.refit_history_["epoch"] == list(range(1, clf.best_epoch_ + 1))
    plain = FineTunedClassifier(rbm, **{**kw, "early_stopping": False, "epochs": clf.best_epoch_}).fit(Xtr, ytr)
    assert plain.history_["train_loss"] == clf.refit_history_["train_loss"]
    assert np.array_equal(plain.predict_proba(Xte), clf.predict_proba(Xte))
    kept = FineTunedClassifier(rbm, **kw).fit(Xtr, ytr)  # without refit: the validated run's best weights
    assert kept.history_ == clf.history_ and not np.array_equal(kept.predict_proba(Xte), clf.predict_proba(Xte))

    halving = FineTunedClassifier(rbm, refit=True, lr_patience=1, lr_multipliers=(0.1, 1.0),
                                  **{**kw, "patience": 4}).fit(Xtr, ytr)
    factors = halving.history_["lr_factor"]
    assert factors[0] == 1.0 and min(factors[:halving.best_epoch_]) < 1.0  # it halved before the best epoch
    assert halving.refit_history_["lr_factor"] == factors[:halving.best_epoch_]
    lrs = {g["layer"]: g["lr"] for g in halving.optimizer_.param_groups}
    assert lrs[1] == pytest.approx(0.05 * factors[halving.best_epoch_ - 1])
    assert lrs[0] == pytest.approx(0.1 * lrs[1])
    with pytest.raises(ValueError, match="ema_decay must be in"):
        FineTunedClassifier(rbm, ema_decay=1.0).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="refit must be True or False"):
        FineTunedClassifier(rbm, refit="yes").fit(Xtr, ytr)


def test_early_stopping_by_loss_keeps_the_best_weights(digits, rbm):
    Xtr, _, ytr, _ = digits
    clf = FineTunedClassifier(rbm, val_metric="loss", learning_rate=0.05, patience=2, epochs=50,
                              random_state=0).fit(Xtr, ytr)
    h = clf.history_
    assert clf.n_iter_ < 50 and clf.n_iter_ - clf.best_epoch_ == 2
    assert h["val_loss"][clf.best_epoch_ - 1] == min(h["val_loss"])


def test_learning_rate_halves_on_plateau(digits, rbm):
    Xtr, _, ytr, _ = digits
    mult = (0.1, 1.0)
    for lr_patience in (None, 1):
        clf = FineTunedClassifier(rbm, val_metric="loss", learning_rate=0.05, patience=6, lr_patience=lr_patience,
                                  lr_multipliers=mult, epochs=40, random_state=0).fit(Xtr, ytr)
        h = clf.history_["val_loss"]
        # epochs whose validation loss did not beat the best so far: each run of lr_patience + 1 of them halves
        stalls = sum(h[i] >= min(h[:i]) for i in range(1, len(h)))
        lrs = {g["layer"]: g["lr"] for g in clf.optimizer_.param_groups}
        if lr_patience is None:
            assert lrs == {0: 0.05 * 0.1, 1: 0.05}
        else:
            assert stalls >= 2
            ratio = lrs[1] / 0.05
            assert ratio < 1 and np.log2(ratio) == round(np.log2(ratio))  # a power of 1/2
            assert lrs[0] / lrs[1] == pytest.approx(0.1)  # every group halves together


# ---------------------------------------------------------------------------- reproducibility
def test_same_seed_same_predictions_and_global_rng_untouched(digits, rbm):
    Xtr, Xte, ytr, _ = digits
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    kw = dict(epochs=5, dropout=0.3, random_state=7)
    a = FineTunedClassifier(rbm, **kw).fit(Xtr, ytr)
    b = FineTunedClassifier(rbm, **kw).fit(Xtr, ytr)
    c = FineTunedClassifier(hidden_layer_sizes=(16,), **kw).fit(Xtr, ytr)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(x, y) for x, y in zip(np.random.get_state(), np_state))
    assert np.array_equal(a.predict_proba(Xte), b.predict_proba(Xte))
    assert a.history_ == b.history_
    other = FineTunedClassifier(rbm, **{**kw, "random_state": 8}).fit(Xtr, ytr)
    assert not np.array_equal(a.predict_proba(Xte), other.predict_proba(Xte))
    assert c.predict(Xte).shape == (len(Xte),)
    torch.manual_seed(123)  # the global generator plays no part
    b2 = FineTunedClassifier(rbm, **kw).fit(Xtr, ytr)
    assert np.array_equal(a.predict_proba(Xte), b2.predict_proba(Xte))


def test_input_dropout_masks_the_visible_units_with_the_given_stream(digits, rbm):
    """hidden(v, input_dropout=p) is the first layer applied to v * mask / (1 - p), the mask drawn
    first from the generator; dropout of the hidden outputs draws next."""
    Xtr, _, ytr, _ = digits
    clf = FineTunedClassifier(rbm, epochs=1, input_dropout=0.2, random_state=0).fit(Xtr, ytr)
    net = clf.network_
    v = torch.as_tensor(Xtr[:11], dtype=torch.float32)
    with torch.no_grad():
        got = net.hidden(v, input_dropout=0.2, generator=torch.Generator().manual_seed(3))[0]
        mask = torch.rand(v.shape, generator=torch.Generator().manual_seed(3)) >= 0.2
        want = net.layers[0](v * mask / 0.8)
        torch.testing.assert_close(got, want)
        assert not torch.allclose(got, net.hidden(v)[0])
        # the same input mask (drawn first), then half of the hidden outputs dropped and the rest doubled
        both = net.hidden(v, input_dropout=0.2, dropout=0.5, generator=torch.Generator().manual_seed(3))[0]
        assert ((both == 0) | torch.isclose(both, 2 * want)).all() and (both == 0).any()
    assert clf.get_params()["input_dropout"] == 0.2


def test_clone_pickle_and_tensor_inputs(digits, rbm):
    Xtr, Xte, ytr, yte = digits
    clf = FineTunedClassifier(rbm, epochs=3, lr_multipliers=(0.5, 1.0), random_state=0)
    c = clone(clf)
    assert c.pretrained is rbm and c.get_params()["lr_multipliers"] == (0.5, 1.0)
    c.fit(Xtr, ytr)
    a = clf.fit(Xtr, ytr)
    assert np.array_equal(a.predict_proba(Xte), c.predict_proba(Xte))
    # a FrozenEstimator wrapper is accepted too
    from sklearn.frozen import FrozenEstimator
    f = FineTunedClassifier(FrozenEstimator(rbm), epochs=3, lr_multipliers=(0.5, 1.0), random_state=0).fit(Xtr, ytr)
    assert np.array_equal(f.predict_proba(Xte), a.predict_proba(Xte))
    # torch tensors in, tensor probabilities out
    t = FineTunedClassifier(rbm, epochs=3, lr_multipliers=(0.5, 1.0), random_state=0).fit(
        torch.as_tensor(Xtr), torch.as_tensor(ytr))
    p = t.predict_proba(torch.as_tensor(Xte))
    assert isinstance(p, torch.Tensor) and np.allclose(p.numpy(), a.predict_proba(Xte), atol=1e-6)
    assert np.array_equal(t.predict(torch.as_tensor(Xte)), a.predict(Xte))
    # pickling keeps the predictions
    r = pickle.loads(pickle.dumps(a))
    assert np.array_equal(r.predict_proba(Xte), a.predict_proba(Xte))
    # string labels
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    s = FineTunedClassifier(rbm, random_state=0, **GOOD).fit(Xtr, names[ytr])
    assert list(s.classes_) == sorted(names)
    assert s.score(Xte, names[yte]) > 0.9


def test_dbm_predictions_are_reproducible_and_float64(digits, dbm):
    Xtr, Xte, ytr, _ = digits
    a = FineTunedClassifier(dbm, epochs=2, random_state=1, dtype="float64").fit(Xtr, ytr)
    b = FineTunedClassifier(dbm, epochs=2, random_state=1, dtype="float64").fit(Xtr, ytr)
    assert a.predict_proba(Xte).dtype == np.float64
    assert np.array_equal(a.predict_proba(Xte), b.predict_proba(Xte))
    assert all(p.dtype == torch.float64 for p in a.network_.parameters())


# ---------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors(digits, rbm):
    Xtr, Xte, ytr, _ = digits
    fitted = FineTunedClassifier(rbm, epochs=1).fit(Xtr, ytr)
    X_nan = Xtr.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        FineTunedClassifier(rbm, epochs=1).fit(X_nan, ytr)
    with pytest.raises(ValueError, match="lr_patience must be an integer >= 0"):
        FineTunedClassifier(rbm, epochs=1, lr_patience=-1).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict(X_nan)
    with pytest.raises(ValueError, match="expecting 64 features"):
        fitted.predict(Xte[:, :10])
    with pytest.raises(ValueError, match="expecting 64 features"):
        FineTunedClassifier(rbm, epochs=1).fit(Xtr[:, :10], ytr)
    base = FineTunedClassifier(hidden_layer_sizes=(8,), epochs=1).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="expecting 64 features"):
        base.predict(Xte[:, :10])
    with pytest.raises(ValueError, match="2-D|2D"):
        fitted.predict(Xte[0])
    with pytest.raises(ValueError, match="2D"):
        FineTunedClassifier(rbm).fit(Xtr[:, 0], ytr)
    with pytest.raises(ValueError, match="only one class"):
        FineTunedClassifier(rbm).fit(Xtr, np.zeros(len(Xtr)))
    with pytest.raises(ValueError, match="rows but y has"):
        FineTunedClassifier(rbm).fit(Xtr, ytr[:-1])
    with pytest.raises(ValueError, match="Unknown label type|continuous"):
        FineTunedClassifier(rbm).fit(Xtr, np.linspace(0, 1, len(Xtr)))
    with pytest.raises(ValueError, match="outside the support"):
        fitted.predict(Xte * 2)  # the RBM's visible units are Bernoulli
    with pytest.raises(NotFittedError, match="not fitted"):
        FineTunedClassifier(hm.RBM(n_hidden=4)).fit(Xtr, ytr)
    assert issubclass(NotFittedError, ValueError)
    with pytest.raises(NotFittedError):
        FineTunedClassifier(rbm).predict(Xte)
    with pytest.raises(ValueError, match="pretrained must be"):
        FineTunedClassifier("rbm").fit(Xtr, ytr)
    for kw, msg in [(dict(optimizer="rmsprop"), "optimizer"), (dict(learning_rate=0), "learning_rate"),
                    (dict(epochs=-1), "epochs"), (dict(batch_size=0), "batch_size"), (dict(dropout=1.0), "dropout"),
                    (dict(input_dropout=-0.1), "input_dropout"),
                    (dict(l2=-1), "l2"), (dict(validation_fraction=1.0), "validation_fraction"),
                    (dict(patience=0), "patience"), (dict(val_metric="f1"), "val_metric"),
                    (dict(dtype="float16"), "dtype"), (dict(random_state="x"), "random_state"),
                    (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes")]:
        with pytest.raises(ValueError, match=msg):
            FineTunedClassifier(rbm, **kw).fit(Xtr, ytr)


def test_init_stores_arguments_unchanged(rbm):
    sizes = [64]
    clf = FineTunedClassifier(rbm, hidden_layer_sizes=sizes, lr_multipliers=[0.1, 1], learning_rate=-5)
    assert clf.hidden_layer_sizes is sizes and clf.learning_rate == -5 and clf.pretrained is rbm
    assert clf.get_params(deep=False)["lr_multipliers"] == [0.1, 1]
    assert copy.deepcopy(clf).learning_rate == -5


@pytest.mark.filterwarnings("ignore")  # the checks' own skips and casts
def test_passes_scikit_learn_estimator_checks():
    from sklearn.utils.estimator_checks import check_estimator
    est = FineTunedClassifier(hidden_layer_sizes=(8,), epochs=200, learning_rate=0.01, random_state=0)
    results = check_estimator(est, on_fail=None)
    failed = [(r["check_name"], repr(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed


def test_pretraining_beats_random_initialisation_with_100_labels():
    """The seed's 'few labels' effect on digits: an RBM pretrained on all 1,500 unlabelled training
    rows, fine-tuned on 10 labels per class, beats the same network from random initialisation
    (mean test accuracy over 3 label draws; measured 0.869 vs 0.847)."""
    from harmonium import datasets
    d = datasets.load_digits()
    X, Xt = datasets.binarize(d.X_train), datasets.binarize(d.X_test)
    y, yt = d.y_train, d.y_test
    rbm = hm.RBM(n_hidden=128, epochs=30, learning_rate=0.05, momentum=0.5, random_state=0, metrics=None).fit(X)
    scores = {"pretrained": [], "random": []}
    for seed in range(3):
        rng = np.random.default_rng(seed)
        idx = np.concatenate([rng.choice(np.where(y == c)[0], 10, replace=False) for c in range(10)])
        for name, pre in (("pretrained", rbm), ("random", None)):
            clf = hm.FineTunedClassifier(pre, hidden_layer_sizes=None if pre is not None else (128,),
                                         learning_rate=3e-3, epochs=200, batch_size=32, early_stopping=False,
                                         random_state=seed).fit(X[idx], y[idx])
            scores[name].append(clf.score(Xt, yt))
    assert np.mean(scores["pretrained"]) > np.mean(scores["random"]) + 0.01, scores
