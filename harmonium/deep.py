"""Deep models as estimators: the deep Boltzmann machine (``DBM``) and the deep belief network
(``DBN``), both built from the RBM's unit types and, for pretraining, from ``RBM`` estimators.

DBM learning (Salakhutdinov & Hinton 2009): greedy layer-wise pretraining with the DBM
modification, then joint training where each update takes

* the positive phase from the mean-field posterior q(h | v) of the batch, and
* the negative phase from persistent particles (all layers) advanced by block Gibbs sweeps,

and writes <dE/dtheta>_q - <dE/dtheta>_particles into ``.grad``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

from . import distributed, io
from .base import _DTYPES, BoltzmannEstimator, _encode_params, _schedule_ok
from .dbm import DBMModel
from .estimators import RBM
from .learning import Schedule, TrainerBase, at_epoch, batches
from .units import make_units, units_config

__all__ = ["DBM", "DBN"]

#: rows of the training (and validation) data used for the per-epoch metrics
METRIC_ROWS = 1000


def _per_layer(value: Any, n: int, name: str) -> list:
    """A per-hidden-layer setting: one value for all layers or a list of n values."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries for {n} hidden layers")
        return list(value)
    return [value] * n


@dataclass
class DBMTrainingConfig:
    learning_rate: Schedule = 0.001
    momentum: Schedule = 0.9
    n_gibbs_steps: Schedule = 5
    batch_size: int = 100
    n_particles: int = 100
    max_mf_updates: int = 50
    mf_tol: float = 1e-7
    mf_damping: float = 0.0
    l2: float = 0.0
    max_norm: float | None = None
    sparsity_target: list | None = None
    sparsity_cost: list | None = None
    sparsity_damping: float = 0.9
    particles_from_data: bool = True
    centering: bool = False
    centering_rate: float = 0.01
    sample_data: bool = False
    optimizer: Any = "sgd"
    ema_decay: float = 0.0


class DBMTrainer(TrainerBase):
    """Joint DBM training: mean-field positive phase, persistent particles for the negative phase."""

    def __init__(self, model: DBMModel, config: DBMTrainingConfig, generator: torch.Generator) -> None:
        super().__init__(model, config, generator)
        self.particles: list[Tensor] | None = None
        self.mf_updates: list[float] = []  # mean mean-field sweeps per batch, per epoch
        self.offsets: list[Tensor] | None = None  # centering: moving averages of <T_l> under the data
        self._restart_chains()

    def _sampler_layout(self, config: DBMTrainingConfig) -> int:
        return config.n_particles

    def _restart_chains(self) -> None:
        """Fresh particles (drawn at the next epoch) for ``config.n_particles``, this rank's share."""
        self.particles = None
        self.n_particles = self.n_local = self.config.n_particles  # over all ranks; this rank's
        if self.group is not None:
            if self.n_particles < self.group.world_size:
                raise ValueError(f"n_particles={self.n_particles} cannot be split over {self.group.world_size} ranks")
            lo, hi = distributed.shard_bounds(self.n_particles, self.group)
            self.n_local = hi - lo

    def _chains(self) -> dict[str, Tensor]:
        return {} if self.particles is None else {f"x{l}": x for l, x in enumerate(self.particles)}

    def _load_chains(self, chains: dict[str, Tensor]) -> None:
        if chains:
            self.particles = [chains[f"x{l}"] for l in range(self.model.n_layers)]

    def _local_state(self) -> dict[str, Any]:
        state = super()._local_state()
        if self.offsets is not None:
            state["offsets"] = torch.cat(self.offsets)
        return state

    def _load_local_state(self, state: dict[str, Any]) -> None:
        super()._load_local_state(state)
        flat = state.get("offsets")
        if flat is not None and tuple(flat.shape) != (sum(self.model.sizes),):
            raise ValueError(f"saved centering offsets have shape {tuple(flat.shape)}, the layers need "
                             f"({sum(self.model.sizes)},)")
        self.offsets = None if flat is None else list(flat.clone().split(self.model.sizes))

    def _init_offsets(self, X: Tensor) -> None:
        """Offsets from the data: <T_0(v)> and the layers' means after one bottom-up pass (the same
        on every rank: every rank holds all of X)."""
        m = self.model
        x = m.upward_init(X[:5000])
        self.offsets = [u.statistic(xl).mean(0) for u, xl in zip(m.layers, x)]

    def _init_particles(self, X: Tensor) -> None:
        c, m, g = self.config, self.model, self.sampler
        n = self.n_local
        if c.particles_from_data:
            idx = torch.randint(X.shape[0], (n,), generator=g, device=X.device)
            x = m.upward_init(self._data(X[idx], m.layers[0]))
            self.particles = [x[0].clone()] + [u.sample(torch.zeros_like(xl), 1.0, g, mean=xl)
                                               for u, xl in zip(m.layers[1:], x[1:])]
        else:
            self.particles = [u.sample(X.new_zeros(n, u.n), 1.0, g) for u in m.layers]

    def step(self, v: Tensor, k: int, n_global: int | None = None) -> int:
        """One update on the batch v (this rank's rows of a global batch of ``n_global`` rows);
        returns the mean-field sweeps it took."""
        c, m, g = self.config, self.model, self.sampler
        n_global = v.shape[0] if n_global is None else n_global
        v = self._data(v, m.layers[0])
        pos, n_mf = m.mean_field(v, max_updates=c.max_mf_updates, tol=c.mf_tol, damping=c.mf_damping)
        self.particles, _ = m.gibbs(self.particles, k, generator=g)
        w_pos, w_neg, momentum = self._write_weights(v.shape[0], n_global, self.n_local, self.n_particles, v)
        m.write_gradient(pos, self.particles, momentum=momentum, w_pos=w_pos, w_neg=w_neg,
                         offsets=self.offsets if c.centering else None)
        sparse = c.sparsity_target is not None
        rows = list(pos) if sparse else []
        if c.centering:
            rows += [u.statistic(x) for u, x in zip(m.layers, pos)]
        means = self._sync(rows, n_global)
        if c.l2:
            for W in m.W:
                W.grad.add_(W.detach(), alpha=c.l2)
        if sparse:
            q = torch.cat(means[1:])
            if self.hidden_activity is None:
                self.hidden_activity = q.clone()
            else:
                self.hidden_activity.mul_(c.sparsity_damping).add_(q, alpha=1 - c.sparsity_damping)
            start = 0
            for l in range(1, m.n_layers):
                n = m.layers[l].n
                t, cost = c.sparsity_target[l - 1], c.sparsity_cost[l - 1]
                if t is not None and cost:
                    d = (self.hidden_activity[start:start + n] - t) * cost
                    m.layers[l].bias.grad.add_(d)
                    m.W[l - 1].grad.addr_(means[l - 1], d)
                start += n
        self._optimizer_step()
        if c.max_norm is not None:
            with torch.no_grad():
                for W in m.W:
                    W.mul_(c.max_norm / W.norm(dim=0, keepdim=True).clamp_min_(c.max_norm))
        if c.centering:  # the model is uncentered: moving the offsets changes nothing but the next gradients
            for mu, mean in zip(self.offsets, means[-m.n_layers:]):
                mu.lerp_(mean, c.centering_rate)
        self._update_average()
        return n_mf

    def run_epoch(self, X: Tensor) -> None:
        self._begin_epoch()
        k = int(at_epoch(self.config.n_gibbs_steps, self.epoch))
        total = count = 0
        with torch.no_grad():
            if self.particles is None:
                self._init_particles(X)
            if self.config.centering and self.offsets is None:
                self._init_offsets(X)
            for v, n in batches(X, self.config.batch_size, self.generator, self.group):
                total += self.step(v, k, n)
                count += 1
        self.mf_updates.append(total / max(count, 1))
        self.epoch += 1


class DBM(BoltzmannEstimator):
    """Deep Boltzmann machine of any depth and unit types.

    Parameters
    ----------
    n_hidden : sizes of the hidden layers, bottom to top, e.g. (512, 1024).
    visible : unit type of the visible layer (as for ``RBM``).
    hidden : unit type of every hidden layer, or a list with one per layer.
    learning_rate, momentum, n_gibbs_steps : constants or per-epoch sequences.
    epochs, batch_size : joint training.
    n_particles : persistent negative particles.
    max_mf_updates, mf_tol, mf_damping : mean-field sweeps per batch at most, the tolerance on the
        largest change that stops them, and damping (mu <- d mu + (1 - d) new).
    l2, max_norm : weight decay and the bound on each hidden unit's incoming weight norm.
    sparsity_target, sparsity_cost, sparsity_damping : as for ``RBM``; a value or one per hidden layer.
    pretrain : True for greedy layer-wise pretraining with the DBM modification, False for random
        initialisation (``W_init`` std), or a list of fitted ``RBM`` estimators to compose.
    pretrain_params : hyperparameters for the pretraining RBMs (a dict, or a list of dicts, one
        per layer), e.g. ``{"epochs": 20, "learning_rate": 0.05}``.
    particles_from_data : start the particles at random training rows (else at random states).
    centering : the centered gradient (Montavon & Mueller 2012; Melchior et al. 2016) with offsets
        that follow the data means of every layer's statistic (rate 0.01), started from the data
        and a bottom-up pass; the model itself stays an ordinary DBM (see ``DBMModel.write_gradient``).
        For unit types whose bias is the natural parameter (Bernoulli, softmax, multinomial).
        On MNIST (784-512-1024, docs/RESULTS.md section 3) it kept the top layer alive: 898 of
        1,024 units active after joint training, against 29 uncentred (they died once the
        momentum rose to 0.9).
    sample_data : treat each training row as the mean of the visible units and train on a fresh
        draw from it every time the row is used (and in the first pretraining RBM): for Bernoulli
        units and grey levels in [0, 1] this is the dynamic binarisation of Salakhutdinov & Hinton's
        DBM code.  Metrics and ``X_val`` see the rows themselves.
    ema_decay : an exponential moving average of the parameters over the joint training's updates
        (as for ``RBM``): the fitted model, metrics and checkpoints are the average, training follows
        the live values.  0 turns it off.
    metrics : "auto" (reconstruction error; exact log-likelihood for tiny models), None, or a list of
        "reconstruction_error", "log_likelihood".
    log_dir : TensorBoard logs of joint training (metrics, parameter and update histograms, each
        hidden layer's mean-field activations, first-layer filters and the particles' visible means).
    """

    _COPIED_PARAM_DEFAULT = {"pretrain": False}

    def __init__(self, n_hidden: Any = (512, 1024), *, visible: Any = "bernoulli", hidden: Any = "bernoulli",
                 learning_rate: Any = 0.001, momentum: Any = 0.9, n_gibbs_steps: Any = 5, epochs: int = 10,
                 batch_size: int = 100, n_particles: int = 100, max_mf_updates: int = 50, mf_tol: float = 1e-7,
                 mf_damping: float = 0.0, l2: float = 2e-4, max_norm: float | None = None,
                 sparsity_target: Any = None, sparsity_cost: Any = 0.0, sparsity_damping: float = 0.9,
                 pretrain: Any = True, pretrain_params: Any = None, particles_from_data: bool = True,
                 centering: bool = False, sample_data: bool = False, ema_decay: float = 0.0,
                 W_init: float = 0.01, optimizer: Any = "sgd", metrics: Any = "auto", metrics_every: int = 1,
                 log_dir: str | None = None, checkpoint_path: str | None = None, checkpoint_every: int = 1, warm_start: bool = False,
                 random_state: int | None = None, dtype: str = "float32", device: str = "cpu",
                 verbose: int = 0) -> None:
        self.n_hidden = n_hidden
        self.visible = visible
        self.hidden = hidden
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.n_gibbs_steps = n_gibbs_steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.n_particles = n_particles
        self.max_mf_updates = max_mf_updates
        self.mf_tol = mf_tol
        self.mf_damping = mf_damping
        self.l2 = l2
        self.max_norm = max_norm
        self.sparsity_target = sparsity_target
        self.sparsity_cost = sparsity_cost
        self.sparsity_damping = sparsity_damping
        self.pretrain = pretrain
        self.pretrain_params = pretrain_params
        self.particles_from_data = particles_from_data
        self.centering = centering
        self.sample_data = sample_data
        self.ema_decay = ema_decay
        self.W_init = W_init
        self.optimizer = optimizer
        self.metrics = metrics
        self.metrics_every = metrics_every
        self.log_dir = log_dir
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.warm_start = warm_start
        self.random_state = random_state
        self.dtype = dtype
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    @property
    def _sizes(self) -> list[int]:
        n = self.n_hidden
        return [int(n)] if isinstance(n, numbers.Integral) else [int(x) for x in n]

    def _check_params(self) -> None:
        n = self.n_hidden
        sizes = [n] if isinstance(n, numbers.Integral) and not isinstance(n, bool) else list(n) if isinstance(
            n, (list, tuple)) else None
        if not sizes or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes):
            raise ValueError(f"n_hidden must be a positive integer or a sequence of them, got {n!r}")
        self._check_integers(epochs=0, batch_size=1, n_particles=1, max_mf_updates=1, metrics_every=1,
                             checkpoint_every=1)
        self._check_common()
        _schedule_ok(self.n_gibbs_steps, "n_gibbs_steps", positive=True, integer=True)
        _schedule_ok(self.l2, "l2", positive=False)
        if not (isinstance(self.mf_damping, numbers.Real) and 0 <= self.mf_damping < 1):
            raise ValueError(f"mf_damping must be in [0, 1), got {self.mf_damping!r}")
        if not (isinstance(self.mf_tol, numbers.Real) and self.mf_tol >= 0):
            raise ValueError(f"mf_tol must be >= 0, got {self.mf_tol!r}")
        if self.max_norm is not None and not (isinstance(self.max_norm, numbers.Real) and self.max_norm > 0):
            raise ValueError(f"max_norm must be None or positive, got {self.max_norm!r}")
        L = len(sizes)
        for t in _per_layer(self.sparsity_target, L, "sparsity_target"):
            if t is not None and not (isinstance(t, numbers.Real) and 0 < t < 1):
                raise ValueError(f"sparsity_target must be None or in (0, 1), got {self.sparsity_target!r}")
        _per_layer(self.sparsity_cost, L, "sparsity_cost")
        for name in ("centering", "sample_data"):
            if getattr(self, name) not in (True, False):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not (self.pretrain in (True, False) or isinstance(self.pretrain, (list, tuple))):
            raise ValueError("pretrain must be True, False or a list of fitted RBMs")
        metrics = () if self.metrics is None else (self.metrics,) if isinstance(self.metrics, str) else self.metrics
        unknown = set(metrics) - {"auto", "reconstruction_error", "log_likelihood"}
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; known: reconstruction_error, log_likelihood")

    def _hidden_specs(self) -> list:
        h = self.hidden
        return list(h) if isinstance(h, (list, tuple)) else [h] * len(self._sizes)

    def _config(self) -> DBMTrainingConfig:
        L = len(self._sizes)
        targets = _per_layer(self.sparsity_target, L, "sparsity_target")
        return DBMTrainingConfig(
            learning_rate=self.learning_rate, momentum=self.momentum, n_gibbs_steps=self.n_gibbs_steps,
            batch_size=self.batch_size, n_particles=self.n_particles, max_mf_updates=self.max_mf_updates,
            mf_tol=float(self.mf_tol), mf_damping=float(self.mf_damping), l2=float(self.l2), max_norm=self.max_norm,
            sparsity_target=None if all(t is None for t in targets) else targets,
            sparsity_cost=[float(c) for c in _per_layer(self.sparsity_cost, L, "sparsity_cost")],
            sparsity_damping=float(self.sparsity_damping), particles_from_data=self.particles_from_data,
            centering=bool(self.centering), sample_data=bool(self.sample_data), optimizer=self.optimizer,
            ema_decay=float(self.ema_decay))

    # ------------------------------------------------------------------ construction
    def _layers(self, n_visible: int) -> list:
        specs = self._hidden_specs()
        if len(specs) != len(self._sizes):
            raise ValueError(f"hidden has {len(specs)} unit types for {len(self._sizes)} hidden layers")
        return [make_units(self.visible, n_visible)] + [make_units(s, n) for s, n in zip(specs, self._sizes)]

    def _fitted_layers(self) -> list:
        return list(self.model_.layers)

    def _build(self, X: Tensor) -> None:
        model = DBMModel(self._layers(X.shape[1])).to(dtype=self._torch_dtype, device=self.device)
        if self.centering and not all(u.linear_bias for u in model.layers):
            raise ValueError("centering needs unit types whose bias is the natural parameter (Bernoulli, softmax, "
                             "multinomial); got " + ", ".join(type(u).__name__ for u in model.layers))
        g = self._generator()
        if self.pretrain is True:
            self._compose(model, self._pretrain(X))
        elif isinstance(self.pretrain, (list, tuple)):
            self._compose(model, list(self.pretrain))
        else:
            with torch.no_grad():
                for W in model.W:
                    W.copy_(torch.randn(W.shape, generator=g, dtype=W.dtype, device=W.device) * self.W_init)
                model.layers[0].bias.copy_(model.layers[0].init_bias(X.mean(0)))
        self.model_ = model
        self.n_features_in_ = X.shape[1]
        self.history_ = {"epoch": []}

    def _pretrain(self, X: Tensor) -> list[RBM]:
        """Greedy layer-wise RBMs with the DBM modification: the first RBM sees its input twice
        (doubled bottom-up input), the last one its hidden layer twice (doubled top-down input),
        the middle ones both (their weights are halved when composed)."""
        L = len(self._sizes)
        params = self.pretrain_params or {}
        params = _per_layer(params, L, "pretrain_params") if isinstance(params, (list, tuple)) else [params] * L
        layers = self._layers(X.shape[1])
        rbms, data = [], X
        seed = int(self._generator().initial_seed() % (2 ** 31))
        for l in range(L):
            kw = dict(n_hidden=self._sizes[l], visible=units_config(layers[l]), hidden=units_config(layers[l + 1]),
                      epochs=10, learning_rate=0.05, momentum=0.9, batch_size=self.batch_size, metrics=None,
                      random_state=seed + l, dtype=self.dtype, device=self.device,
                      verbose=max(0, self.verbose - 1))
            if l > 0:
                kw["vb_init"] = 0.0
            else:
                kw["sample_data"] = self.sample_data
            kw.update(params[l])
            epochs = kw.pop("epochs")
            rbm = RBM(**kw, epochs=0).fit(data)
            if L > 1:
                rbm.model_.up_factor = 1.0 if l == L - 1 else 2.0
                rbm.model_.down_factor = 1.0 if l == 0 else 2.0
            rbm.set_params(epochs=epochs, warm_start=True).fit(data)
            if self.verbose:
                print(f"pretrained layer {l + 1}/{L}: {rbm.n_features_in_} x {rbm.n_hidden}", flush=True)
            with torch.no_grad():
                data = rbm.model_.hidden_mean(data)
            rbms.append(rbm)
        return rbms

    @staticmethod
    def _compose(model: DBMModel, rbms: list) -> None:
        """Copy pretrained RBMs into the DBM: W_l from RBM l (halved for middle RBMs of a DBM with
        three or more hidden layers), each hidden bias the mean of the two RBMs that share the layer."""
        L = model.n_layers - 1
        if len(rbms) != L:
            raise ValueError(f"{len(rbms)} pretrained RBMs for {L} hidden layers")
        with torch.no_grad():
            for l, r in enumerate(rbms):
                check_is_fitted(r, "model_")
                src = r.model_
                if tuple(src.W.shape) != tuple(model.W[l].shape):
                    raise ValueError(f"RBM {l} has weights {tuple(src.W.shape)}, layer needs "
                                     f"{tuple(model.W[l].shape)}")
                scale = 0.5 if 0 < l < L - 1 else 1.0
                model.W[l].copy_(src.W * scale)
            model.layers[0].bias.copy_(rbms[0].model_.visible.bias)
            for l in range(1, L + 1):
                below = rbms[l - 1].model_.hidden.bias
                model.layers[l].bias.copy_(below if l == L else (below + rbms[l].model_.visible.bias) / 2)

    # ------------------------------------------------------------------ fitting
    def _visible_units(self):
        return self.model_.layers[0]

    def _make_trainer(self, config: DBMTrainingConfig) -> DBMTrainer:
        return DBMTrainer(self.model_, config, self._generator())

    def _metric_names(self, X_val) -> tuple[str, ...]:
        m = self.metrics
        if m is None:
            return ()
        if m == "auto":
            names = ["reconstruction_error"]
            if hasattr(self, "model_") and self._exact_feasible():
                names.append("log_likelihood")
            return tuple(names)
        return (m,) if isinstance(m, str) else tuple(m)

    def _exact_feasible(self) -> bool:
        from .estimate import dbm_enumeration_cost
        return dbm_enumeration_cost(self.model_)[1] <= 2 ** 16

    @torch.no_grad()
    def _record(self, epoch: int, names, X: Tensor, X_val: Tensor | None) -> None:
        from . import estimate
        values: dict[str, float] = {"mf_updates": self.trainer_.mf_updates[-1]} if self.trainer_.mf_updates else {}
        log_z = None
        for split, data in (("train", X), ("val", X_val)):
            if data is None:
                continue
            data = data[:METRIC_ROWS]
            for name in names:
                if name == "reconstruction_error":
                    values[f"{split}_reconstruction_error"] = float(((data - self._reconstruct(data)) ** 2).mean())
                elif name == "log_likelihood":
                    if log_z is None:
                        log_z = estimate.exact_log_partition(self.model_)
                    values[f"{split}_log_likelihood"] = float(
                        estimate.exact_log_likelihood(self.model_, data, log_z).mean())
        self._append_history(epoch, values)
        if self._logger is not None:
            m, rows = self.model_, X[:METRIC_ROWS]
            q = self._mean_field(rows)
            particles = self.trainer_.particles
            seen = None
            if particles is not None:
                x1 = [None, particles[1][:64]] + [None] * (m.n_layers - 2)
                seen = m.layers[0].mean(m.layer_input(x1, 0))
            self._logger.log_epoch(epoch, values, m, m.W[0].T, {f"layer{l}": q[l] for l in range(1, m.n_layers)},
                                   seen)
        self._print_values(epoch, values)

    # ------------------------------------------------------------------ inference
    def _mean_field(self, v: Tensor) -> list[Tensor]:
        return self.model_.mean_field(v, max_updates=self.max_mf_updates, tol=self.mf_tol,
                                      damping=self.mf_damping)[0]

    def _reconstruct(self, v: Tensor) -> Tensor:
        x = self._mean_field(v)
        m = self.model_
        return m.layers[0].mean(m.layer_input([None, x[1]] + [None] * (m.n_layers - 2), 0))

    @torch.no_grad()
    def transform(self, X):
        """Mean-field posterior means of the top hidden layer."""
        m = self._fitted()
        return self._out(self._mean_field(self._to_tensor(X, "X", m.layers[0]))[-1], X)

    def score_samples(self, X, log_z: float | None = None):
        """The variational lower bound on log p(v) of each row (``estimate.elbo``): the mean-field
        posterior's E_q[-E(v, h)] + H(q) - log Z.  log Z: ``log_z`` when given (an earlier AIS
        estimate, say), else exact for small models, else AIS with the standard 14,500 betas and 100
        runs (minutes for an MNIST-sized DBM), seeded by ``random_state``."""
        from . import estimate
        m = self._fitted()
        v = self._to_tensor(X, "X", m.layers[0])
        seed = int(self.random_state) if isinstance(self.random_state, numbers.Integral) else None
        return self._out(estimate.elbo(m, v, estimate.log_partition(m, log_z, random_state=seed)).to(v.dtype), X)

    def score(self, X, y=None, log_z: float | None = None) -> float:
        """Mean variational lower bound on log p(v) (see ``score_samples``)."""
        return float(np.mean(np.asarray(self.score_samples(X, log_z))))

    @torch.no_grad()
    def mean_field(self, X) -> list:
        """Mean-field posterior means of every hidden layer, bottom to top."""
        m = self._fitted()
        return [self._out(x, X) for x in self._mean_field(self._to_tensor(X, "X", m.layers[0]))[1:]]

    @torch.no_grad()
    def reconstruct(self, X):
        """E[v | mu_1]: the visible means given the mean-field posterior of the first hidden layer."""
        m = self._fitted()
        return self._out(self._reconstruct(self._to_tensor(X, "X", m.layers[0])), X)

    @torch.no_grad()
    def sample(self, n_samples: int = 1, n_steps: int = 1000, *, mean: bool = False):
        """Visible samples after ``n_steps`` block-Gibbs sweeps of the whole DBM, started from the
        persistent particles (repeated as needed), or from uniformly random states for a model that
        has none.  (Chains from random states can settle in a basin of negligible mass that the
        particles never visit: on MNIST, the first hidden layer off and the visible biases' blur.)"""
        m = self._fitted()
        g = self._generator()
        particles = self._trainer().particles
        if particles is None:
            x = [u.sample(m.W[0].new_zeros(n_samples, u.n), 1.0, g) for u in m.layers]
        else:
            idx = torch.arange(n_samples, device=particles[0].device) % particles[0].shape[0]
            x = [p[idx] for p in particles]
        x, means = m.gibbs(x, n_steps, generator=g)
        return (means[0] if mean else x[0]).cpu().numpy()

    # ------------------------------------------------------------------ model files
    def _model_config(self) -> dict[str, Any]:
        return {"units": [units_config(u) for u in self.model_.layers]}

    @classmethod
    def _expected_shapes(cls, config: dict) -> dict[str, Any]:
        nv = config.get("n_features_in")
        nh = config.get("params", {}).get("n_hidden")
        sizes = [nh] if isinstance(nh, int) else nh
        if not isinstance(nv, int) or isinstance(nv, bool) or nv < 1 or not isinstance(sizes, list) or not sizes \
                or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sizes):
            raise ValueError(f"model file declares invalid layer sizes: {nv!r}, {nh!r}")
        full = [nv] + sizes
        shapes: dict[str, Any] = {"rng?": None, "trainer.*": None, "params.*": None}
        for l, n in enumerate(full):
            shapes[f"model.layers.{l}.bias"] = (n,)
            shapes[f"model.layers.{l}.log_sigma?"] = (n,)
        for l in range(len(sizes)):
            shapes[f"model.W.{l}"] = (full[l], full[l + 1])
        return shapes

    def _make_model(self, config: dict, state: dict[str, Tensor]) -> DBMModel:
        units = config["units"]
        sizes = [config["n_features_in"]] + self._sizes
        if not isinstance(units, list) or len(units) != len(sizes):
            raise ValueError("model file's unit types do not match its layer sizes")
        return DBMModel([make_units(u, n) for u, n in zip(units, sizes)])

    def _check_chains(self, chains: dict[str, Tensor], model: DBMModel) -> None:
        if chains:
            for l, u in enumerate(model.layers):
                x = chains.get(f"x{l}")
                if x is None or x.ndim != 2 or x.shape[1] != u.n:
                    raise ValueError(f"saved particles for layer {l} are missing or have the wrong shape")

    # ------------------------------------------------------------------ other constructors
    @classmethod
    def from_arrays(cls, weights, biases, units: Any = "bernoulli", *, dtype: str = "float32",
                    device: str = "cpu", **params) -> "DBM":
        """A fitted DBM from weights [W_0 (n_0, n_1), W_1 (n_1, n_2), ...] and biases [b_0, b_1, ...];
        ``units``: one unit type for all layers or a list (visible first)."""
        Ws = [np.asarray(W, dtype=np.float64) for W in weights]
        bs = [np.asarray(b, dtype=np.float64) for b in biases]
        if not Ws or any(W.ndim != 2 for W in Ws) or len(bs) != len(Ws) + 1:
            raise ValueError("need 2-D weights [W_0, ..., W_{L-1}] and L + 1 bias vectors")
        sizes = [Ws[0].shape[0]] + [W.shape[1] for W in Ws]
        for l, W in enumerate(Ws):
            if W.shape[0] != sizes[l]:
                raise ValueError(f"W_{l} has shape {W.shape}; its first dimension must be {sizes[l]}")
        specs = list(units) if isinstance(units, (list, tuple)) else [units] * len(sizes)
        est = cls(n_hidden=tuple(sizes[1:]), visible=specs[0], hidden=specs[1:], pretrain=False, dtype=dtype,
                  device=device, **params)
        est._check_params()
        model = DBMModel([make_units(s, n) for s, n in zip(specs, sizes)]).to(dtype=_DTYPES[dtype], device=device)
        with torch.no_grad():
            for W, w in zip(model.W, Ws):
                W.copy_(torch.as_tensor(w))
            for u, b in zip(model.layers, bs):
                if b.shape != (u.n,):
                    raise ValueError(f"a bias has shape {b.shape}, the layer has {u.n} units")
                u.bias.copy_(torch.as_tensor(b))
        est.model_ = model
        est.n_features_in_ = sizes[0]
        est.history_ = {"epoch": []}
        return est


class DBN(BoltzmannEstimator):
    """Deep belief network: a greedy stack of RBMs, each trained on the hidden means of the one below.

    ``transform`` propagates hidden means upwards; ``sample`` runs Gibbs sampling in the top RBM and
    passes its visible states down through the directed layers; ``score_samples`` is a stochastic
    lower bound on log p(v) (``estimate.dbn_lower_bound``).  ``rbm_params``: hyperparameters for
    every RBM (a dict) or one dict per layer; the sizes, unit types, dtype and device are the DBN's.
    ``random_state``: layer l is seeded with ``random_state + l``; None gives every layer a fresh seed.
    """

    #: set by the DBN for every layer, so not accepted in ``rbm_params``
    _LAYER_KEYS = ("n_hidden", "visible", "hidden", "dtype", "device")

    def __init__(self, n_hidden: Any = (500, 500, 2000), *, visible: Any = "bernoulli", hidden: Any = "bernoulli",
                 rbm_params: Any = None, random_state: int | None = None, dtype: str = "float32",
                 device: str = "cpu", verbose: int = 0) -> None:
        self.n_hidden = n_hidden
        self.visible = visible
        self.hidden = hidden
        self.rbm_params = rbm_params
        self.random_state = random_state
        self.dtype = dtype
        self.device = device
        self.verbose = verbose

    def _layer_params(self) -> list[dict[str, Any]]:
        """Keyword arguments of each layer's ``RBM``, checked."""
        sizes = [self.n_hidden] if isinstance(self.n_hidden, numbers.Integral) else (
            list(self.n_hidden) if isinstance(self.n_hidden, (list, tuple)) else None)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes):
            raise ValueError(f"n_hidden must be a positive integer or a sequence of them, got {self.n_hidden!r}")
        self._check_placement()
        if isinstance(self.random_state, np.random.RandomState):
            raise ValueError("a DBN's random_state must be None or an int (layer l is seeded with random_state + l)")
        L = len(sizes)
        params = _per_layer(self.rbm_params or {}, L, "rbm_params")
        for l, p in enumerate(params):
            if not isinstance(p, dict):
                raise ValueError(f"rbm_params must be a dict or a list of {L} dicts, got {type(p).__name__} for "
                                 f"layer {l}")
            clash = sorted(set(p) & set(self._LAYER_KEYS))
            if clash:
                raise ValueError(f"rbm_params sets {clash}, which the DBN sets for every layer; use the DBN's "
                                 f"own {', '.join(clash)}")
        hidden = _per_layer(self.hidden, L, "hidden")
        seed = self.random_state  # None: every layer draws its own fresh seed, as scikit-learn's None means
        return [dict(dict(metrics=None, random_state=None if seed is None else int(seed) + l, verbose=self.verbose),
                     **params[l],
                     n_hidden=sizes[l], visible=self.visible if l == 0 else hidden[l - 1], hidden=hidden[l],
                     dtype=self.dtype, device=self.device) for l in range(L)]

    def fit(self, X, y=None, *, X_val=None) -> "DBN":
        """Train the RBMs bottom up, each on the hidden means of the one below (``X_val`` likewise,
        for the metrics an RBM's ``rbm_params`` ask for)."""
        layers = self._layer_params()
        data = self._to_tensor(X)
        val = None if X_val is None else self._to_tensor(X_val, "X_val")
        rbms = []
        for kw in layers:
            rbm = RBM(**kw).fit(data, X_val=val)
            rbms.append(rbm)
            with torch.no_grad():
                data = rbm.model_.hidden_mean(data)
                val = None if val is None else rbm.model_.hidden_mean(val)
        self.rbms_ = rbms
        self.model_ = rbms[-1].model_
        self.n_features_in_ = rbms[0].n_features_in_
        return self

    def _fitted(self):
        check_is_fitted(self, "rbms_")
        return self.rbms_

    @property
    def epochs_trained_(self) -> list[int]:
        """Epochs each layer's RBM has trained, bottom first."""
        return [r.epochs_trained_ for r in self._fitted()]

    @torch.no_grad()
    def transform(self, X):
        """Hidden means of the top layer, propagated upwards through the stack."""
        rbms = self._fitted()
        x = self._to_tensor(X, "X", rbms[0].model_.visible)
        for r in rbms:
            x = r.model_.hidden_mean(x)
        return self._out(x, X)

    def score_samples(self, X, log_z: float | None = None, n_samples: int = 100):
        """A stochastic lower bound on log p(v) of each row (``estimate.dbn_lower_bound``): the mean
        over ``n_samples`` recognition passes, seeded by ``random_state``.  log Z of the top RBM:
        ``log_z`` when given, else exact for small models, else AIS with the standard 14,500 betas and
        100 runs from a base model fitted to the rows' upward means."""
        from . import estimate
        rbms = self._fitted()
        v = self._to_tensor(X, "X", rbms[0].model_.visible)
        seed = int(self.random_state) if isinstance(self.random_state, numbers.Integral) else None
        if log_z is None:
            with torch.no_grad():
                up = v
                for r in rbms[:-1]:
                    up = r.model_.hidden_mean(up)
            log_z = estimate.log_partition(rbms[-1].model_, None, random_state=seed, base_rate=up)
        bound = estimate.dbn_lower_bound(rbms, v, log_z, n_samples=n_samples, random_state=seed)
        return self._out(bound.to(v.dtype), X)

    def score(self, X, y=None, log_z: float | None = None) -> float:
        """Mean lower bound on log p(v) (see ``score_samples``)."""
        return float(np.mean(np.asarray(self.score_samples(X, log_z))))

    @torch.no_grad()
    def sample(self, n_samples: int = 1, n_steps: int = 1000):
        """Samples: Gibbs in the top RBM (an undirected associative memory), then one top-down pass
        of visible means through the directed layers below."""
        rbms = self._fitted()
        top = rbms[-1]
        x = torch.as_tensor(top.sample(n_samples, n_steps), dtype=_DTYPES[self.dtype], device=self.device)
        for r in reversed(rbms[:-1]):
            x = r.model_.visible_mean(x) if r is rbms[0] else r.model_.sample_visible(x, generator=r._generator())
        return x.cpu().numpy()

    # ------------------------------------------------------------------ model files
    def _get_state(self) -> tuple[dict, dict[str, Tensor]]:
        """Every layer's RBM state under ``layers.<l>.``, the DBN's own hyperparameters beside them."""
        tensors: dict[str, Tensor] = {}
        layers = []
        for l, r in enumerate(self._fitted()):
            config, t = r._get_state()
            layers.append(config)
            tensors.update({f"layers.{l}.{k}": v for k, v in t.items()})
        params = _encode_params(self.get_params(deep=False), tensors)
        return {"params": params, "n_features_in": int(self.n_features_in_), "layers": layers}, tensors

    @classmethod
    def _expected_shapes(cls, config: dict) -> dict[str, Any]:
        layers = config.get("layers")
        if not isinstance(layers, list) or not layers or not all(isinstance(c, dict) for c in layers):
            raise ValueError("model file declares no layers (a DBN's layers are a list of RBM configurations)")
        nv = config.get("n_features_in")
        if isinstance(nv, bool) or not isinstance(nv, int) or nv < 1:
            raise ValueError(f"model file declares an invalid n_features_in: {nv!r}")
        shapes: dict[str, Any] = {"params.*": None}
        for l, c in enumerate(layers):
            shapes.update({f"layers.{l}.{k}": v for k, v in RBM._expected_shapes(c).items()})
            below = nv if l == 0 else layers[l - 1]["params"]["n_hidden"]  # checked above
            if c["n_features_in"] != below:
                raise ValueError(f"model file: layer {l} has {c['n_features_in']} visible units, the layer below "
                                 f"gives it {below}")
        return shapes

    @classmethod
    def _from_state(cls, config: dict, tensors: dict[str, Tensor], device: str | None = None):
        est = cls._unfitted_from_state(config, tensors, device)
        layers = est._layer_params()
        if len(layers) != len(config["layers"]):
            raise ValueError(f"model file: n_hidden gives {len(layers)} layers, the file holds "
                             f"{len(config['layers'])}")
        rbms = []
        for l, c in enumerate(config["layers"]):
            prefix = f"layers.{l}."
            rbm = RBM._from_state(c, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                                  device=device)
            if rbm.n_hidden != layers[l]["n_hidden"] or rbm.dtype != est.dtype:
                raise ValueError(f"model file: layer {l} is {rbm.n_hidden} {rbm.dtype} units, the DBN's "
                                 f"settings say {layers[l]['n_hidden']} {est.dtype}")
            rbms.append(rbm)
        est.rbms_ = rbms
        est.model_ = rbms[-1].model_
        est.n_features_in_ = int(config["n_features_in"])
        return est


io.register_estimator(DBM)
io.register_estimator(DBN)
