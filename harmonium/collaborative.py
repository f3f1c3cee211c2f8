"""Restricted Boltzmann machines for collaborative filtering (Salakhutdinov, Mnih & Hinton, 2007).

``RatingsRBM`` trains one RBM per user (per item with ``item_based=True``, the "I-RBM") with
shared weights ``W`` of shape (n_items, K, n_hidden), visible biases (n_items, K) and hidden
biases (n_hidden,).  A user's visible layer holds one K-way softmax unit per item the user rated
and none for the others:

    p(h_j = 1 | V)  = sigmoid(c_j + sum_{i rated, k} V_ik W_ikj)
    p(v_i = k | h)  = softmax_k(b_ik + sum_j h_j W_ikj)

Training is CD-T on mini-batches of users and is sparse: a batch only gathers the rows
``W[item, rating]`` of the (user, item, rating) triples it contains (``index_add_`` over flattened
indices ``item * K + rating``), so an epoch costs O(n_ratings * n_hidden * K).  All randomness
comes from the estimator's own ``torch.Generator``.

Prediction uses the mean-field hidden probabilities p(h | V_user) computed from the user's
*training* ratings and returns E[r] = sum_k k p(v_i = k | h).  Pairs whose user or item was not
seen in ``fit`` get a fallback: the item's mean training rating when the item is known, else the
global mean training rating (binary model: the item's / global fraction of "like").

``binary=True`` is the variant of the PyTorch RBM tutorial: ratings 1..2 become 0 ("dislike"),
3..5 become 1 ("like") (in general: like iff rating >= ceil((n_ratings + 1) / 2)); each rated
item is a Bernoulli unit, implemented as the equivalent 2-way softmax. ``predict`` then returns
the probability of "like" and ``binary_mae`` the tutorial's error.

``score`` returns the RMSE (lower is better, *not* scikit-learn's greater-is-better convention).

``recommend(None, ratings=[(item, rating), ...])`` recommends for a new user from their ratings
alone ("fold-in": p(h | V) from the trained weights, user-based models).  ``warm_start=True``
continues training a fitted or loaded model; model files hold the momentum buffers, the random
generator and the epoch count, so a resumed fit is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import distributed, io
from .base import BoltzmannEstimator, _schedule_ok
from .learning import at_epoch
from .units import one_hot_draw

__all__ = ["RatingsRBM", "RatingsRBMModel", "bias_baseline", "cd_statistics", "check_ratings"]


# ---------------------------------------------------------------------------------- validation
def _int_array(a, what: str, ncols: tuple[int, ...]) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype == object:
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be numeric") from None
    if a.ndim != 2 or a.shape[1] not in ncols:
        raise ValueError(f"{what} must be a 2-D array with {' or '.join(map(str, ncols))} columns, "
                         f"got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{what} is empty: found 0 rows while a minimum of 1 is required")
    if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
        raise ValueError(f"{what} must hold integers, got dtype {a.dtype}")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ValueError(f"{what} contains NaN or infinite values")
        if (a != np.round(a)).any():
            raise ValueError(f"{what} must hold integers (ids and ratings), found non-integer values")
        if np.abs(a).max() >= 2 ** 53:
            raise ValueError(f"{what} holds values too large to be exact integers")
    return a.astype(np.int64)


def check_ratings(triples, n_ratings: int = 5, what: str = "ratings") -> np.ndarray:
    """Validate (n, 3) triples user id, item id, rating (integers, ratings in 1..n_ratings)."""
    a = _int_array(triples, what, (3,))
    r = a[:, 2]
    if r.min() < 1 or r.max() > n_ratings:
        bad = r[(r < 1) | (r > n_ratings)][0]
        raise ValueError(f"{what}: ratings must be integers in 1..{n_ratings}, found {bad}")
    return a


# ---------------------------------------------------------------------------------- the model
class RatingsRBMModel(torch.nn.Module):
    """Shared parameters: W (n_items, K, n_hidden), vb (n_items, K), hb (n_hidden,)."""

    def __init__(self, n_items: int, n_ratings: int, n_hidden: int) -> None:
        super().__init__()
        self.W = torch.nn.Parameter(torch.zeros(n_items, n_ratings, n_hidden))
        self.vb = torch.nn.Parameter(torch.zeros(n_items, n_ratings))
        self.hb = torch.nn.Parameter(torch.zeros(n_hidden))

    def hidden_input(self, case: Tensor, vis: Tensor, V: Tensor, n_cases: int) -> Tensor:
        """c + sum_{i,k} V_ik W_ik. for each case; V (n_triples, K) holds the visible states of the
        observed (case, vis) pairs (one-hot ratings or probabilities)."""
        W = self.W.detach()
        src = torch.einsum("nk,nkh->nh", V, W[vis])
        out = self.hb.detach().expand(n_cases, -1).clone()
        return out.index_add_(0, case, src)

    def hidden_input_onehot(self, case: Tensor, vis: Tensor, rating: Tensor, n_cases: int) -> Tensor:
        K, H = self.W.shape[1], self.W.shape[2]
        Wf = self.W.detach().reshape(-1, H)
        out = self.hb.detach().expand(n_cases, -1).clone()
        return out.index_add_(0, case, Wf[vis * K + rating])

    def visible_logits(self, case: Tensor, vis: Tensor, h: Tensor) -> Tensor:
        """b_i + W_i h for each observed (case, vis) pair -> (n_triples, K)."""
        return self.vb.detach()[vis] + torch.einsum("nkh,nh->nk", self.W.detach()[vis], h[case])


def cd_statistics(model: RatingsRBMModel, case: Tensor, vis: Tensor, rating: Tensor, n_cases: int,
                  k: int = 1, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Positive and negative sufficient statistics of CD-k for a batch of ``n_cases`` RBMs.

    ``case`` (local case index 0..n_cases-1), ``vis`` (visible/item index) and ``rating`` (0..K-1)
    list the observed triples.  Returns sums over the batch: ``pos_W``, ``neg_W`` (n_items, K, H),
    ``pos_vb``, ``neg_vb`` (n_items, K), ``pos_hb``, ``neg_hb`` (H,).  The states the chain
    continues from -- every hidden state, and the visible ratings of all sweeps but the last -- are
    sampled with ``generator`` (mean-field probabilities when it is None, which makes the result
    deterministic); the last sweep's visible reconstruction is the softmax probabilities, and the
    statistics use probabilities throughout.
    """
    n_items, K, H = model.W.shape
    dt = model.W.dtype
    flat = vis * K + rating
    ph0 = torch.sigmoid(model.hidden_input_onehot(case, vis, rating, n_cases))
    pos_W = torch.zeros(n_items * K, H, dtype=dt, device=ph0.device).index_add_(0, flat, ph0[case])
    pos_vb = torch.zeros(n_items * K, dtype=dt, device=ph0.device).index_add_(
        0, flat, torch.ones_like(flat, dtype=dt))
    ph = ph0
    for t in range(k):
        h = ph if generator is None else (torch.rand(ph.shape, generator=generator, dtype=dt,
                                                     device=ph.device) < ph).to(dt)
        pv = torch.softmax(model.visible_logits(case, vis, h), dim=1)
        v = pv
        if generator is not None and t < k - 1:
            # a rating the chain continues from: one draw by inverse CDF, its uniform indexed by
            # (case, item) so that a case's draws do not depend on the other cases' ratings
            u = torch.rand(n_cases, n_items, generator=generator, dtype=dt, device=pv.device)[case, vis]
            v = one_hot_draw(pv, u[:, None])
        ph = torch.sigmoid(model.hidden_input(case, vis, v, n_cases))
    neg_W = torch.zeros(n_items, K, H, dtype=dt, device=ph.device).index_add_(
        0, vis, pv[:, :, None] * ph[case][:, None, :])
    neg_vb = torch.zeros(n_items, K, dtype=dt, device=ph.device).index_add_(0, vis, pv)
    return {"pos_W": pos_W.view(n_items, K, H), "neg_W": neg_W, "pos_vb": pos_vb.view(n_items, K),
            "neg_vb": neg_vb, "pos_hb": ph0.sum(0), "neg_hb": ph.sum(0)}


# ---------------------------------------------------------------------------------- estimator
class RatingsRBM(BoltzmannEstimator):
    """RBM for collaborative filtering (Salakhutdinov, Mnih & Hinton 2007); see the module doc.

    Parameters
    ----------
    n_hidden : hidden units.
    item_based : one RBM per item whose visible units are the users who rated it (I-RBM).
    n_ratings : K, ratings are integers 1..K.
    learning_rate, momentum : constants or per-epoch sequences (the last value repeats).
    l2 : weight decay on W.
    epochs, batch_size : passes over the users (items) and users (items) per update.
    k : CD steps T, a constant or a per-epoch schedule, e.g. ``[1] * 20 + [3] * 15 + [5] * 15``.
    binary : like/dislike model (see module doc); ``predict`` returns p(like).
    warm_start : when True and the estimator is fitted (or loaded from a model file), ``fit`` continues
        training up to ``epochs`` epochs in all, from the saved weights, momentum buffers (velocities)
        and random generator: training 4 epochs equals training 2, saving, loading and training 2 more.
        The training triples must cover the same user and item ids as before.
    random_state : int seed; never touches global random state.
    dtype, device, verbose : as in the other estimators (verbose 1 prints a line per epoch).

    Fitted attributes: ``model_`` (``RatingsRBMModel``), ``n_users_``, ``n_items_``,
    ``global_mean_``, ``history_`` (per epoch: training reconstruction RMSE and seconds),
    ``epochs_trained_``.
    """

    def __init__(self, n_hidden: int = 100, *, item_based: bool = False, n_ratings: int = 5,
                 learning_rate: Any = 0.01, momentum: Any = 0.9, l2: float = 0.001, epochs: int = 50,
                 batch_size: int = 64, k: Any = 1, binary: bool = False, warm_start: bool = False,
                 random_state: int | None = None, dtype: str = "float32", device: str = "cpu",
                 verbose: int = 0) -> None:
        self.n_hidden = n_hidden
        self.item_based = item_based
        self.n_ratings = n_ratings
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.l2 = l2
        self.epochs = epochs
        self.batch_size = batch_size
        self.k = k
        self.binary = binary
        self.warm_start = warm_start
        self.random_state = random_state
        self.dtype = dtype
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        self._check_integers(n_hidden=1, n_ratings=2, epochs=0, batch_size=1)
        self._check_common()
        _schedule_ok(self.k, "k", positive=True, integer=True)
        _schedule_ok(self.l2, "l2", positive=False)
        for name in ("item_based", "binary", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @property
    def _K(self) -> int:
        return 2 if self.binary else int(self.n_ratings)

    def _like_threshold(self) -> int:
        return math.ceil((self.n_ratings + 1) / 2)

    def _targets(self, r: np.ndarray) -> np.ndarray:
        """Ratings 1..K -> 0-based model values (0/1 for binary)."""
        return (r >= self._like_threshold()).astype(np.int64) if self.binary else r - 1

    # ------------------------------------------------------------------ data layout
    def _set_data(self, user_ids: np.ndarray, item_ids: np.ndarray, u: np.ndarray, i: np.ndarray,
                  r: np.ndarray) -> None:
        """Store the training data in index space (sorted by case) and the fallbacks."""
        self.user_ids_, self.item_ids_ = user_ids, item_ids
        self.n_users_, self.n_items_ = len(user_ids), len(item_ids)
        case, vis = (i, u) if self.item_based else (u, i)
        order = np.lexsort((vis, case))
        self._data = (u[order], i[order], r[order])
        value = r.astype(np.float64) if self.binary else r + 1.0
        self.global_mean_ = float(value.mean())
        cnt = np.bincount(i, minlength=len(item_ids))
        self.item_mean_ = np.where(cnt > 0, np.bincount(i, weights=value, minlength=len(item_ids))
                                   / np.maximum(cnt, 1), self.global_mean_)
        self.__dict__.pop("_ph_cache", None)

    def _case_vis(self):
        u, i, r = self._data
        case, vis = (i, u) if self.item_based else (u, i)
        n_cases, n_vis = (self.n_items_, self.n_users_) if self.item_based else (self.n_users_, self.n_items_)
        return case, vis, r, n_cases, n_vis

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None) -> "RatingsRBM":
        """Train on (n, 3) triples user id, item id, rating (integers, ratings in 1..n_ratings)."""
        self._check_params()
        a = check_ratings(X, self.n_ratings, "X")
        group = distributed.current()  # data-parallel: every rank holds all ratings, takes its share of cases
        if group is not None:
            distributed.check_same_data(torch.as_tensor(a, dtype=torch.float64), "X")
        user_ids, u = np.unique(a[:, 0], return_inverse=True)
        item_ids, i = np.unique(a[:, 1], return_inverse=True)
        u, i = u.ravel(), i.ravel()
        key = u * len(item_ids) + i
        if len(np.unique(key)) != len(key):
            raise ValueError("X contains the same (user, item) pair more than once")
        warm = self.warm_start and hasattr(self, "model_")
        if warm:
            if (not np.array_equal(user_ids, self.user_ids_) or not np.array_equal(item_ids, self.item_ids_)
                    or tuple(self.model_.W.shape) != (self.n_features_in_, self._K, self.n_hidden)
                    or self.n_features_in_ != (len(user_ids) if self.item_based else len(item_ids))
                    or self.model_.W.dtype != self._torch_dtype):
                raise ValueError("warm_start: X must hold the same user and item ids as the data the model "
                                 "was trained on (and n_hidden, n_ratings, binary, item_based, dtype "
                                 "unchanged)")
        else:
            for attr in ("_rng", "_vel", "_epochs_trained"):
                self.__dict__.pop(attr, None)
        self._set_data(user_ids, item_ids, u, i, self._targets(a[:, 2]))
        case, vis, r, n_cases, n_vis = self._case_vis()
        K, H, dt, dev = self._K, self.n_hidden, self._torch_dtype, self.device
        g = self._generator()
        if warm:
            model = self.model_
        else:
            model = RatingsRBMModel(n_vis, K, H).to(dtype=dt, device=dev)
            with torch.no_grad():
                model.W.copy_(torch.randn(model.W.shape, generator=g, dtype=dt, device=dev) * 0.01)
                # visible biases: log of each item's smoothed rating frequencies (Hinton's guide)
                counts = np.bincount(vis * K + r, minlength=n_vis * K).reshape(n_vis, K) + 1.0
                model.vb.copy_(torch.as_tensor(np.log(counts / counts.sum(1, keepdims=True)), dtype=dt))
            if group is not None:
                distributed.broadcast_(list(model.parameters()))
            self.model_ = model
            self.n_features_in_ = n_vis
            self.history_ = {"epoch": []}
            self._epochs_trained = 0
        case_t = torch.as_tensor(case, device=dev)
        vis_t = torch.as_tensor(vis, device=dev)
        r_t = torch.as_tensor(r, device=dev)
        counts = torch.bincount(case_t, minlength=n_cases)
        starts = torch.cumsum(counts, 0) - counts
        if getattr(self, "_vel", None) is None:
            self._vel = [torch.zeros_like(p) for p in (model.W, model.vb, model.hb)]
        vel = self._vel
        sampler = g
        if group is not None:  # g shuffles (the same on every rank); each rank samples with its own stream
            sampler = torch.Generator(device=g.device)
        for epoch in range(self._epochs_trained, self.epochs):
            t0 = time.perf_counter()
            lr, mom = at_epoch(self.learning_rate, epoch), at_epoch(self.momentum, epoch)
            kk, l2 = int(at_epoch(self.k, epoch)), at_epoch(self.l2, epoch)
            if group is not None:
                distributed.reseed_rank_stream(sampler, g, group)
            perm = torch.randperm(n_cases, generator=g, device=dev)
            for s in range(0, n_cases, self.batch_size):
                cb = perm[s:s + self.batch_size]
                b = float(len(cb))  # the global batch
                if group is not None:
                    lo, hi = distributed.shard_bounds(len(cb), group)
                    cb = cb[lo:hi]
                cnt = counts[cb]
                total = int(cnt.sum())
                if total == 0 and group is None:
                    continue
                local = torch.repeat_interleave(torch.arange(len(cb), device=dev), cnt)
                offs = torch.cumsum(cnt, 0) - cnt
                idx = starts[cb][local] + torch.arange(total, device=dev) - offs[local]
                st = cd_statistics(model, local, vis_t[idx], r_t[idx], len(cb), kk, sampler)
                if group is not None:  # sums over every rank's cases
                    distributed.all_reduce_sum_(list(st.values()))
                with torch.no_grad():
                    grads = ((st["pos_W"] - st["neg_W"]) / b - l2 * model.W,
                             (st["pos_vb"] - st["neg_vb"]) / b, (st["pos_hb"] - st["neg_hb"]) / b)
                    for p, v, gr in zip((model.W, model.vb, model.hb), vel, grads):
                        v.mul_(mom).add_(gr, alpha=lr)
                        p.add_(v)
            if not all(torch.isfinite(p).all() for p in model.parameters()):
                raise FloatingPointError(f"training diverged in epoch {epoch + 1}; lower the learning rate")
            self._epochs_trained = epoch + 1
            self.__dict__.pop("_ph_cache", None)
            values = {"train_rmse": self._train_rmse(), "seconds": time.perf_counter() - t0}
            self._append_history(epoch + 1, values)
            self._print_values(epoch + 1, values)
        self.__dict__.pop("_ph_cache", None)
        return self

    @property
    def epochs_trained_(self) -> int:
        """Epochs of training so far (across warm starts and model files)."""
        self._fitted()
        return int(getattr(self, "_epochs_trained", len(self.history_.get("epoch", []))))

    def _train_rmse(self) -> float:
        case, vis, r, _, _ = self._case_vis()
        p = self._predict_index(torch.as_tensor(case, device=self.device), torch.as_tensor(vis, device=self.device))
        truth = r.astype(np.float64) if self.binary else r + 1.0
        return float(np.sqrt(np.mean((p - truth) ** 2)))

    # ------------------------------------------------------------------ prediction
    def _hidden_probs(self) -> Tensor:
        """Mean-field p(h | V) of every case from its training ratings, (n_cases, n_hidden)."""
        if "_ph_cache" not in self.__dict__:
            case, vis, r, n_cases, _ = self._case_vis()
            dev = self.device
            with torch.no_grad():
                self._ph_cache = torch.sigmoid(self.model_.hidden_input_onehot(
                    torch.as_tensor(case, device=dev), torch.as_tensor(vis, device=dev),
                    torch.as_tensor(r, device=dev), n_cases))
        return self._ph_cache

    def _predict_index(self, case: Tensor, vis: Tensor, chunk: int = 65536) -> np.ndarray:
        return self._expected(case, vis, self._hidden_probs(), chunk)

    def _expected(self, case: Tensor, vis: Tensor, ph: Tensor, chunk: int = 65536) -> np.ndarray:
        """E[r] (binary: p(like)) of visible ``vis`` given the hidden probabilities ``ph[case]``."""
        m = self.model_
        K = self._K
        values = torch.arange(K, dtype=ph.dtype, device=ph.device) + (0.0 if self.binary else 1.0)
        out = []
        with torch.no_grad():
            for s in range(0, len(case), chunk):
                c, v = case[s:s + chunk], vis[s:s + chunk]
                logits = m.vb[v] + torch.einsum("nkh,nh->nk", m.W[v], ph[c])
                out.append(torch.softmax(logits, 1) @ values)
        return torch.cat(out).cpu().numpy().astype(np.float64) if out else np.zeros(0)

    def predict(self, X) -> np.ndarray:
        """Expected rating E[r] (binary model: p(like)) for each (user id, item id) row of X
        ((n, 2), or (n, 3) whose third column is ignored); unseen users/items get the fallback."""
        self._fitted()
        a = _int_array(X, "X", (2, 3))
        ui = np.searchsorted(self.user_ids_, a[:, 0])
        ii = np.searchsorted(self.item_ids_, a[:, 1])
        ku = (ui < self.n_users_) & (self.user_ids_[np.minimum(ui, self.n_users_ - 1)] == a[:, 0])
        ki = (ii < self.n_items_) & (self.item_ids_[np.minimum(ii, self.n_items_ - 1)] == a[:, 1])
        pred = np.full(len(a), self.global_mean_)
        pred[ki] = self.item_mean_[ii[ki]]
        both = ku & ki
        if both.any():
            u_t = torch.as_tensor(ui[both], device=self.device)
            i_t = torch.as_tensor(ii[both], device=self.device)
            case, vis = (i_t, u_t) if self.item_based else (u_t, i_t)
            pred[both] = self._predict_index(case, vis)
        return pred

    def score(self, X, y=None) -> float:
        """RMSE (lower is better!) of ``predict`` on (n, 3) triples; for the binary model, of p(like)
        against the 0/1 truth."""
        a = check_ratings(X, self.n_ratings, "X")
        truth = self._targets(a[:, 2]).astype(np.float64) if self.binary else a[:, 2].astype(np.float64)
        return float(np.sqrt(np.mean((self.predict(a) - truth) ** 2)))

    def mae(self, X) -> float:
        """Mean absolute error of ``predict`` on (n, 3) triples (binary: of p(like) vs 0/1)."""
        a = check_ratings(X, self.n_ratings, "X")
        truth = self._targets(a[:, 2]).astype(np.float64) if self.binary else a[:, 2].astype(np.float64)
        return float(np.mean(np.abs(self.predict(a) - truth)))

    def binary_mae(self, X) -> float:
        """Binary model only: mean |[p(like) >= 0.5] - like| on (n, 3) triples (the PyTorch RBM
        tutorial's test error; the fraction of wrongly predicted like/dislike)."""
        if not self.binary:
            raise ValueError("binary_mae needs binary=True")
        a = check_ratings(X, self.n_ratings, "X")
        pred = (self.predict(a) >= 0.5).astype(np.float64)
        return float(np.mean(np.abs(pred - self._targets(a[:, 2]))))

    def recommend(self, user, n: int = 10, exclude_rated: bool = True, *,
                  ratings=None) -> list[tuple[int, float]]:
        """The ``n`` items with the highest predicted rating (p(like)) for ``user``, best first, as
        (item id, prediction) pairs; items the user rated in training are left out unless
        ``exclude_rated`` is False.  An unknown user gets the items by mean training rating.

        ``ratings``: (m, 2) rows item id, rating (1..n_ratings) of a new user, not necessarily seen
        in ``fit`` ("fold-in", user-based models only): the user's hidden units are computed from
        these ratings alone with the trained weights, ``user`` is ignored (may be None), and with
        ``exclude_rated`` the items in ``ratings`` are left out.  Items unknown to the model are
        ignored in ``ratings``."""
        self._fitted()
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        items = self.item_ids_
        keep = np.ones(len(items), bool)
        if ratings is not None:
            if self.item_based:
                raise ValueError("recommend(ratings=...) needs a user-based model (item_based=False): "
                                 "the I-RBM has no weights for a user it was not trained on")
            a = _int_array(ratings, "ratings", (2,))
            a = check_ratings(np.column_stack([np.zeros(len(a), np.int64), a]), self.n_ratings, "ratings")
            if len(np.unique(a[:, 1])) != len(a):
                raise ValueError("ratings contains the same item more than once")
            pos = np.minimum(np.searchsorted(items, a[:, 1]), len(items) - 1)
            known = items[pos] == a[:, 1]
            dev = self.device
            with torch.no_grad():
                vis = torch.as_tensor(pos[known], device=dev)
                ph = torch.sigmoid(self.model_.hidden_input_onehot(
                    torch.zeros(len(vis), dtype=torch.int64, device=dev), vis,
                    torch.as_tensor(self._targets(a[known, 2]), device=dev), 1))
                pred = self._expected(torch.zeros(len(items), dtype=torch.int64, device=dev),
                                      torch.arange(len(items), device=dev), ph)
            if exclude_rated:
                keep[pos[known]] = False
        else:
            if isinstance(user, bool) or not isinstance(user, numbers.Integral):
                raise ValueError(f"user must be an integer id, got {user!r}")
            pred = self.predict(np.stack([np.full(len(items), int(user)), items], 1))
            if exclude_rated:
                pos = np.searchsorted(self.user_ids_, user)
                if pos < self.n_users_ and self.user_ids_[pos] == user:
                    u, i, _ = self._data
                    keep[i[u == pos]] = False
        idx = np.flatnonzero(keep)
        idx = idx[np.argsort(-pred[idx], kind="stable")][:n]
        return [(int(items[j]), float(pred[j])) for j in idx]

    def transform(self, X) -> np.ndarray:
        """Hidden features p(h | V) of the users (items, for the I-RBM) in the (n, 3) triples X, computed
        from X's ratings alone: one row per distinct user (item) id in increasing order.  The ids on
        the other side must have been seen at fit (ratings of unknown items or users are ignored)."""
        self._fitted()
        a = check_ratings(X, self.n_ratings, "X")
        case_col, vis_col = (1, 0) if self.item_based else (0, 1)
        table = self.user_ids_ if self.item_based else self.item_ids_
        pos = np.minimum(np.searchsorted(table, a[:, vis_col]), len(table) - 1)
        known = table[pos] == a[:, vis_col]
        case_ids, case = np.unique(a[:, case_col], return_inverse=True)
        case, vis, r = case.ravel()[known], pos[known], self._targets(a[known, 2])
        dev = self.device
        with torch.no_grad():
            ph = torch.sigmoid(self.model_.hidden_input_onehot(
                torch.as_tensor(case, device=dev), torch.as_tensor(vis, device=dev),
                torch.as_tensor(r, device=dev), len(case_ids)))
        return ph.cpu().numpy()

    def hidden_probabilities(self) -> np.ndarray:
        """Mean-field p(h | V) of every user (item, for the I-RBM) in ``user_ids_`` order."""
        self._fitted()
        return self._hidden_probs().cpu().numpy()

    # ------------------------------------------------------------------ model files
    def _model_config(self) -> dict[str, Any]:
        return {"n_users": int(self.n_users_), "n_items": int(self.n_items_),
                "global_mean": self.global_mean_, "epochs_trained": self.epochs_trained_}

    @classmethod
    def _expected_shapes(cls, config: dict) -> dict[str, Any]:
        p = config.get("params", {})
        nv, nh = config.get("n_features_in"), p.get("n_hidden")
        K = 2 if p.get("binary") else p.get("n_ratings")
        for name, v in (("n_features_in", nv), ("n_hidden", nh), ("n_ratings", K)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"model file declares an invalid {name}: {v!r}")
        return {"model.W": (nv, K, nh), "model.vb": (nv, K), "model.hb": (nh,), "rng?": None,
                "data.user_ids": None, "data.item_ids": None, "data.u": None, "data.i": None,
                "data.r": None, "data.item_mean": None, "params.*": None, "trainer.*": None,
                "trainer.velocity.W?": (nv, K, nh), "trainer.velocity.vb?": (nv, K),
                "trainer.velocity.hb?": (nh,)}

    def _make_model(self, config: dict, state: dict[str, Tensor]) -> RatingsRBMModel:
        return RatingsRBMModel(config["n_features_in"], self._K, self.n_hidden)

    def _check_chains(self, chains: dict[str, Tensor], model) -> None:
        pass

    def _get_state(self):
        config, tensors = super()._get_state()
        u, i, r = self._data
        for name, arr in (("user_ids", self.user_ids_), ("item_ids", self.item_ids_), ("u", u), ("i", i),
                          ("r", r)):
            tensors[f"data.{name}"] = torch.as_tensor(np.ascontiguousarray(arr, dtype=np.int64))
        tensors["data.item_mean"] = torch.as_tensor(np.asarray(self.item_mean_, dtype=np.float64))
        # momentum buffers: without them a resumed fit would differ from an uninterrupted one
        vel = getattr(self, "_vel", None)
        if vel is not None:
            for name, v in zip(("W", "vb", "hb"), vel):
                tensors[f"trainer.velocity.{name}"] = v.detach().contiguous()
        return config, tensors

    @classmethod
    def _from_state(cls, config: dict, tensors: dict[str, Tensor], device: str | None = None):
        data = {k[5:]: v.numpy() for k, v in tensors.items() if k.startswith("data.")}
        vel = {k[len("trainer.velocity."):]: v for k, v in tensors.items() if k.startswith("trainer.velocity.")}
        rest = {k: v for k, v in tensors.items()
                if not k.startswith("data.") and not k.startswith("trainer.velocity.")}
        est = super()._from_state(config, rest, device=device)
        nu, ni = config["n_users"], config["n_items"]
        uid, iid, u, i, r = (data[k] for k in ("user_ids", "item_ids", "u", "i", "r"))
        n_vis = ni if not est.item_based else nu
        if (uid.shape != (nu,) or iid.shape != (ni,) or n_vis != config["n_features_in"]
                or not (u.shape == i.shape == r.shape) or u.ndim != 1 or len(u) == 0
                or u.min() < 0 or u.max() >= nu or i.min() < 0 or i.max() >= ni
                or r.min() < 0 or r.max() >= est._K or data["item_mean"].shape != (ni,)):
            raise ValueError("inconsistent training data in the model file")
        est._set_data(uid, iid, u, i, r)
        ep = config.get("epochs_trained", len(est.history_.get("epoch", [])))
        if isinstance(ep, bool) or not isinstance(ep, int) or ep < 0:
            raise ValueError(f"model file declares an invalid epochs_trained: {ep!r}")
        est._epochs_trained = ep
        if vel:
            m = est.model_
            if sorted(vel) != ["W", "hb", "vb"]:
                raise ValueError(f"model file holds an incomplete set of velocities: {sorted(vel)}")
            out = []
            for name, p in (("W", m.W), ("vb", m.vb), ("hb", m.hb)):
                v = vel[name]
                if v.shape != p.shape or v.dtype != p.dtype or not torch.isfinite(v).all():
                    raise ValueError(f"velocity {name!r} does not match its parameter (shape, dtype) or is "
                                     "not finite")
                out.append(v.to(est.device).clone())
            est._vel = out
        return est


io.register_estimator(RatingsRBM)


# ---------------------------------------------------------------------------------- baselines
def bias_baseline(train, test, *, l2_user: float = 10.0, l2_item: float = 25.0, n_sweeps: int = 10,
                  n_ratings: int = 5, return_predictions: bool = False):
    """Global mean + user bias + item bias, L2-regularised, fitted by alternating least squares
    (closed-form sweeps: item biases given user biases, then user biases given item biases).
    Returns the test RMSE (and the predictions when ``return_predictions``); predictions are
    clipped to 1..n_ratings, unseen users/items get a zero bias."""
    tr = check_ratings(train, n_ratings, "train")
    te = check_ratings(test, n_ratings, "test")
    users = np.unique(tr[:, 0])
    items = np.unique(tr[:, 1])
    u = np.searchsorted(users, tr[:, 0])
    i = np.searchsorted(items, tr[:, 1])
    r = tr[:, 2].astype(np.float64)
    mu = r.mean()
    bu = np.zeros(len(users))
    bi = np.zeros(len(items))
    nu = np.bincount(u, minlength=len(users))
    ni = np.bincount(i, minlength=len(items))
    for _ in range(n_sweeps):
        bi = np.bincount(i, weights=r - mu - bu[u], minlength=len(items)) / (ni + l2_item)
        bu = np.bincount(u, weights=r - mu - bi[i], minlength=len(users)) / (nu + l2_user)

    def lookup(ids, table, bias):
        pos = np.minimum(np.searchsorted(table, ids), len(table) - 1)
        return np.where(table[pos] == ids, bias[pos], 0.0)

    pred = np.clip(mu + lookup(te[:, 0], users, bu) + lookup(te[:, 1], items, bi), 1, n_ratings)
    rmse = float(np.sqrt(np.mean((pred - te[:, 2]) ** 2)))
    return (rmse, pred) if return_predictions else rmse
