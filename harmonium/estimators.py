"""scikit-learn style estimators over the torch models.

``RBM(n_hidden, visible=..., hidden=..., ...)`` stores its arguments unchanged; ``fit``
validates them and the data, builds ``model_`` (an ``RBMModel``) and trains it.
Presets ``BernoulliRBM``, ``GaussianBernoulliRBM`` and ``BernoulliMultinomialRBM`` only
change defaults.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

from . import estimate, io
from .base import _DTYPES, BoltzmannEstimator, _schedule_ok
from .learning import Trainer, TrainingConfig
from .rbm import RBMModel
from .units import make_units, units_config

__all__ = ["RBM", "BernoulliRBM", "GaussianBernoulliRBM", "BernoulliMultinomialRBM"]

#: rows of the training (and validation) data used for the per-epoch pseudo-likelihood
METRIC_ROWS = 1000
#: largest number of states for which the per-epoch exact log-likelihood is computed
EXACT_METRIC_STATES = 2 ** 16
KNOWN_METRICS = ("reconstruction_error", "pseudo_log_likelihood", "free_energy_gap", "log_likelihood", "swap_rate")


class RBM(BoltzmannEstimator):
    """Restricted Boltzmann machine over any pair of unit types.

    Parameters
    ----------
    n_hidden : number of hidden units.
    visible, hidden : unit type of each layer: a name ("bernoulli", "gaussian", "softmax",
        "multinomial"), a dict ``{"name": ..., **options}`` (e.g. ``{"name": "softmax",
        "group_size": 5}``), a ``Units`` subclass, or an instance of the right size.
    learning_rate, momentum, k : constants or per-epoch sequences (the last value repeats).
    epochs : passes over the data in ``fit``.
    batch_size : rows per update.
    persistent : persistent chains (PCD) instead of chains restarted at the data (CD).
    n_chains : number of persistent chains (default: batch_size).
    n_temperatures : > 1 runs parallel tempering with that many replicas of the chains.
    l2 : weight decay on W.
    dropout : probability of zeroing each visible unit of a training row in the positive phase.
    sparsity_target, sparsity_cost, sparsity_damping : penalty pulling the damped mean hidden
        activation towards the target (Hinton 2010, sec. 11).
    max_norm : bound on the L2 norm of the incoming weights of each hidden unit.
    centering : centered RBM (Melchior et al. 2016) with offsets as moving averages of the means.
    sample_v_states : the visible states the chains pass on.  None (the default) samples every
        visible state a chain continues from (each sweep of a persistent or tempered chain, all but
        the last sweep of CD-k) and uses the visible means in CD's last sweep, whose reconstruction
        no later sweep reads (Hinton's recipe for CD-1).  True samples them all; False passes means
        everywhere, which turns every sweep into a mean-field step, so the chains no longer sample
        the model: on MNIST a 784-500 CD-25 RBM scores -97.9 nats with means everywhere and -86.2
        with sampled states (docs/RESULTS.md, section 2).
    sample_h_states : sample the hidden states passed along the chain, otherwise pass their means
        (the statistics use hidden means either way).
    sample_data : treat each training row as the mean of the visible units and train on a fresh
        draw from it every time the row is used (for Bernoulli units and grey levels in [0, 1]:
        dynamic binarisation).  Metrics and ``X_val`` see the rows themselves.
    ema_decay : keep an exponential moving average of the parameters, updated after every update as
        a <- d_t a + (1 - d_t) theta with d_t = min(ema_decay, (1 + t) / (10 + t)) (Polyak averaging of
        the stochastic-approximation iterates; for a centred RBM the average of the natural
        parameters).  Training follows the live parameters; the recorded metrics, checkpoints and
        the fitted model are the average, and the live values are kept in the model file's training
        state so that training resumes exactly.  0 turns it off.  0.999 averages over the last
        ~1,000 updates.
    W_init : std of the Gaussian initial weights, an array (n_visible, n_hidden), or a fitted RBM
        whose parameters are copied.
    vb_init : visible biases: None for the unit type's choice from data means (logit of the
        means for Bernoulli units), a number or an array.
    hb_init : hidden biases, a number or an array.
    optimizer : "sgd" (with momentum), "adam", or a callable ``params -> torch.optim.Optimizer``.
    metrics : per-epoch metrics recorded in ``history_``: any of "reconstruction_error",
        "pseudo_log_likelihood", "free_energy_gap" (needs X_val), "log_likelihood" (exact, small
        models only), "swap_rate" (parallel tempering: ``swap_rate`` and ``swap_rate_min``, the mean
        and the lowest acceptance over neighbouring temperatures since the last record); "auto" picks
        what is affordable; None or () records none.
    metrics_every : record metrics every this many epochs (and after the last).
    log_dir : folder for TensorBoard logs of the recorded epochs (scalars, histograms, images).
    checkpoint_path, checkpoint_every : save the whole training state atomically to this file every
        ``checkpoint_every`` epochs and at the end; when the file exists, ``fit`` resumes from it, so
        a killed run started again with the same command ends bit-identical to an uninterrupted one.
    warm_start : when fitted already, ``fit`` continues from the current state.
    random_state : int seed; the same seed gives bit-identical results on CPU. Never touches
        global random state.
    dtype : "float32" or "float64".  device : torch device ("cpu", "cuda", ...).
    verbose : 0 silent, 1 a line per recorded epoch, 2 also a progress bar.
    """

    def __init__(self, n_hidden: int = 256, *, visible: Any = "bernoulli", hidden: Any = "bernoulli",
                 learning_rate: Any = 0.05, momentum: Any = 0.5, epochs: int = 10, batch_size: int = 10,
                 k: Any = 1, persistent: bool = False, n_chains: int | None = None, n_temperatures: int = 1,
                 l2: float = 1e-4, dropout: float | None = None, sparsity_target: float | None = None,
                 sparsity_cost: float = 0.0, sparsity_damping: float = 0.9, max_norm: float | None = None,
                 centering: bool = False, sample_v_states: bool | None = None, sample_h_states: bool = True,
                 sample_data: bool = False, ema_decay: float = 0.0,
                 W_init: Any = 0.01, vb_init: Any = None, hb_init: Any = 0.0, optimizer: Any = "sgd",
                 metrics: Any = "auto", metrics_every: int = 1, log_dir: str | None = None,
                 checkpoint_path: str | None = None, checkpoint_every: int = 1, warm_start: bool = False,
                 random_state: int | None = None, dtype: str = "float32", device: str = "cpu",
                 verbose: int = 0) -> None:
        self.n_hidden = n_hidden
        self.visible = visible
        self.hidden = hidden
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.epochs = epochs
        self.batch_size = batch_size
        self.k = k
        self.persistent = persistent
        self.n_chains = n_chains
        self.n_temperatures = n_temperatures
        self.l2 = l2
        self.dropout = dropout
        self.sparsity_target = sparsity_target
        self.sparsity_cost = sparsity_cost
        self.sparsity_damping = sparsity_damping
        self.max_norm = max_norm
        self.centering = centering
        self.sample_v_states = sample_v_states
        self.sample_h_states = sample_h_states
        self.sample_data = sample_data
        self.ema_decay = ema_decay
        self.W_init = W_init
        self.vb_init = vb_init
        self.hb_init = hb_init
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
    def _check_params(self) -> None:
        self._check_integers(n_hidden=1, epochs=0, batch_size=1, n_chains=-1, n_temperatures=1, metrics_every=1,
                             checkpoint_every=1)
        self._check_common()
        _schedule_ok(self.k, "k", positive=True, integer=True)
        for name in ("l2", "sparsity_cost"):
            _schedule_ok(getattr(self, name), name, positive=False)
        for name in ("dropout", "sparsity_target"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, numbers.Real) and 0 <= v < 1):
                raise ValueError(f"{name} must be None or in [0, 1), got {v!r}")
        if not (isinstance(self.sparsity_damping, numbers.Real) and 0 <= self.sparsity_damping < 1):
            raise ValueError(f"sparsity_damping must be in [0, 1), got {self.sparsity_damping!r}")
        if self.max_norm is not None and not (isinstance(self.max_norm, numbers.Real) and self.max_norm > 0):
            raise ValueError(f"max_norm must be None or positive, got {self.max_norm!r}")
        if self.sample_v_states not in (None, True, False):
            raise ValueError(f"sample_v_states must be None, True or False, got {self.sample_v_states!r}")
        if self.sample_data not in (True, False):
            raise ValueError(f"sample_data must be True or False, got {self.sample_data!r}")
        metrics = self._metric_names(None)
        unknown = set(metrics) - set(KNOWN_METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; known: {list(KNOWN_METRICS)}")
        if "swap_rate" in metrics and self.n_temperatures < 2:
            raise ValueError(f"the swap_rate metric needs parallel tempering (n_temperatures >= 2), "
                             f"got n_temperatures={self.n_temperatures}")

    def _metric_names(self, X_val) -> tuple[str, ...]:
        m = self.metrics
        if m is None:
            return ()
        if isinstance(m, str):
            if m != "auto":
                return (m,)
            names = ["reconstruction_error"]
            if hasattr(self, "model_") and self.model_.visible.enumerable:
                names.append("pseudo_log_likelihood")
            if X_val is not None:
                names.append("free_energy_gap")
            if hasattr(self, "model_") and estimate.enumeration_cost(self.model_)[1] <= EXACT_METRIC_STATES:
                names.append("log_likelihood")
            if self.n_temperatures > 1:
                names.append("swap_rate")
            return tuple(names)
        return tuple(m)

    def _layers(self, n_visible: int) -> list:
        return [make_units(self.visible, n_visible), make_units(self.hidden, self.n_hidden)]

    def _fitted_layers(self) -> list:
        return [self.model_.visible, self.model_.hidden]

    def _build(self, X: Tensor) -> None:
        """Create ``model_`` for data X (called by fit when not warm-starting)."""
        n_visible = X.shape[1]
        if isinstance(self.W_init, RBM):
            check_is_fitted(self.W_init)
            src = self.W_init.model_
            if src.n_visible != n_visible or src.n_hidden != self.n_hidden:
                raise ValueError(f"W_init RBM has shape {src.n_visible}x{src.n_hidden}, "
                                 f"need {n_visible}x{self.n_hidden}")
        model = RBMModel(*self._layers(n_visible)).to(dtype=self._torch_dtype, device=self.device)
        g = self._generator()
        with torch.no_grad():
            if isinstance(self.W_init, RBM):
                model.load_state_dict(self.W_init.model_.state_dict())
            else:
                if isinstance(self.W_init, numbers.Real):
                    if self.W_init < 0:
                        raise ValueError(f"W_init as a std must be non-negative, got {self.W_init}")
                    model.W.copy_(torch.randn(model.W.shape, generator=g, dtype=model.W.dtype,
                                              device=model.W.device) * self.W_init)
                else:
                    model.W.copy_(self._array(self.W_init, (n_visible, self.n_hidden), "W_init"))
                if self.vb_init is None:
                    model.visible.bias.copy_(model.visible.init_bias(X.mean(0)))
                else:
                    model.visible.bias.copy_(self._array(self.vb_init, (n_visible,), "vb_init"))
                model.hidden.bias.copy_(self._array(self.hb_init, (self.n_hidden,), "hb_init"))
        self.model_ = model
        self.n_features_in_ = n_visible
        self.history_: dict[str, list] = {"epoch": []}

    def _config(self) -> TrainingConfig:
        return TrainingConfig(
            learning_rate=self.learning_rate, momentum=self.momentum, k=self.k, batch_size=self.batch_size,
            persistent=self.persistent, n_chains=self.n_chains, n_temperatures=self.n_temperatures,
            l2=float(self.l2), dropout=self.dropout, sparsity_target=self.sparsity_target,
            sparsity_cost=float(self.sparsity_cost), sparsity_damping=float(self.sparsity_damping),
            max_norm=self.max_norm, centering=self.centering, sample_v_states=self.sample_v_states,
            sample_h_states=self.sample_h_states, sample_data=bool(self.sample_data), optimizer=self.optimizer,
            ema_decay=float(self.ema_decay))

    # ------------------------------------------------------------------ fitting
    def partial_fit(self, X, y=None) -> "RBM":
        """One pass over X (as one epoch), creating the model on the first call."""
        self._check_params()
        built = not hasattr(self, "model_")
        X = self._to_tensor(X)
        if built:
            self._build(X)
        else:
            self._check_continues()
        self._validate(X, "X", self.model_.visible)
        self._join_group(X, built)
        self._run(self._trainer(), X, None, 1)
        return self

    def _visible_units(self):
        return self.model_.visible

    def _make_trainer(self, config: TrainingConfig) -> Trainer:
        return Trainer(self.model_, config, self._generator())

    def _record(self, epoch: int, names, X: Tensor, X_val: Tensor | None) -> None:
        m = self.model_
        rows = {"train": X[:METRIC_ROWS]}
        if X_val is not None:
            rows["val"] = X_val[:METRIC_ROWS]
        values: dict[str, float] = {}
        log_z = None
        for split, data in rows.items():
            full = X if split == "train" else X_val
            for name in names:
                if name == "reconstruction_error":
                    values[f"{split}_reconstruction_error"] = estimate.reconstruction_error(m, full)
                elif name == "pseudo_log_likelihood":
                    try:
                        values[f"{split}_pseudo_log_likelihood"] = float(
                            estimate.pseudo_log_likelihood(m, data).mean())
                    except ValueError:
                        pass
                elif name == "log_likelihood":
                    if log_z is None:
                        log_z = estimate.exact_log_partition(m)
                    values[f"{split}_log_likelihood"] = float(estimate.exact_log_likelihood(m, full, log_z).mean())
        if "free_energy_gap" in names and X_val is not None:
            n = min(len(X), len(X_val), METRIC_ROWS)
            values["free_energy_gap"] = estimate.free_energy_gap(m, X[:n], X_val[:n])
        if "swap_rate" in names:
            rates = self.trainer_.phase.swap_rates(reset=True)
            tried = rates[~rates.isnan()]
            if len(tried):
                values["swap_rate"], values["swap_rate_min"] = float(tried.mean()), float(tried.min())
        self._append_history(epoch, values)
        if self._logger is not None:
            chains = getattr(self.trainer_.phase, "h", None)
            with torch.no_grad():
                particles = m.visible_mean(chains[:64]) if chains is not None else m.visible_mean(
                    m.hidden_mean(X[:64]))
                hidden = m.hidden_mean(rows["train"])
            self._logger.log_epoch(epoch, values, m, m.W.T, {"hidden": hidden}, particles)
        self._print_values(epoch, values)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def transform(self, X):
        """E[h | v] for each row of X: the hidden features."""
        m = self._fitted()
        return self._out(m.hidden_mean(self._to_tensor(X, "X", m.visible)), X)

    @torch.no_grad()
    def free_energy(self, X):
        """F(v) for each row."""
        m = self._fitted()
        return self._out(m.free_energy(self._to_tensor(X, "X", m.visible)), X)

    @torch.no_grad()
    def score_samples(self, X):
        """Exact pseudo-log-likelihood of each row (normalised over every state of every site)."""
        m = self._fitted()
        return self._out(estimate.pseudo_log_likelihood(m, self._to_tensor(X, "X", m.visible)), X)

    def score(self, X, y=None) -> float:
        """Mean pseudo-log-likelihood."""
        return float(np.mean(np.asarray(self.score_samples(X))))

    @torch.no_grad()
    def reconstruct(self, X):
        """E[v | E[h | v]]: one deterministic up-down pass."""
        m = self._fitted()
        return self._out(m.visible_mean(m.hidden_mean(self._to_tensor(X, "X", m.visible))), X)

    @torch.no_grad()
    def gibbs(self, X, n_steps: int = 1):
        """Visible samples after ``n_steps`` Gibbs sweeps v -> h -> v started at X."""
        m = self._fitted()
        g = self._generator()
        s = m.start(self._to_tensor(X, "X", m.visible), generator=g)
        return self._out(m.gibbs(s.h, n_steps, generator=g).v, X)

    @torch.no_grad()
    def run_visible(self, X):
        """Hidden states sampled given the visible rows X (the small seed's ``run_visible``)."""
        m = self._fitted()
        return self._out(m.sample_hidden(self._to_tensor(X, "X", m.visible), generator=self._generator()), X)

    @torch.no_grad()
    def run_hidden(self, H):
        """Visible states sampled given hidden rows H (the small seed's ``run_hidden``)."""
        m = self._fitted()
        return self._out(m.sample_visible(self._to_tensor(H, "H", m.hidden), generator=self._generator()), H)

    def _random_visible(self, n: int) -> Tensor:
        """Visible states drawn from the independent model of the visible biases (beta = 0)."""
        m = self.model_
        zeros = torch.zeros(n, m.n_visible, dtype=m.W.dtype, device=m.W.device)
        return m.visible.sample(zeros, 1.0, self._generator())

    @torch.no_grad()
    def sample(self, n_samples: int = 1, n_steps: int = 1000, *, start=None, mean: bool = False):
        """``n_samples`` visible samples after ``n_steps`` Gibbs sweeps from random (or given) starts.

        ``mean=True`` returns E[v | h] of the last sweep instead of the sampled states.
        """
        m = self._fitted()
        g = self._generator()
        v0 = self._random_visible(n_samples) if start is None else self._to_tensor(start, "start", m.visible)
        s = m.gibbs(m.start(v0, generator=g).h, n_steps, generator=g)
        out = m.visible_mean(s.h) if mean else s.v
        return out.detach().cpu().numpy()

    @torch.no_grad()
    def complete(self, X, mask, n_steps: int = 100):
        """Conditional sampling: keep X where ``mask`` is true and sample the rest given it."""
        m = self._fitted()
        g = self._generator()
        x = self._to_tensor(np.where(np.asarray(mask, bool), np.asarray(X), 0.0) if not isinstance(X, Tensor)
                            else torch.where(torch.as_tensor(mask, dtype=torch.bool), X, 0.0), "X")
        keep = torch.as_tensor(np.asarray(mask), dtype=torch.bool, device=x.device).expand_as(x)
        v0 = torch.where(keep, x, self._random_visible(x.shape[0]))
        s = m.gibbs(m.start(v0, generator=g).h, n_steps, generator=g, clamp=(keep, x))
        return self._out(s.v, X)

    @torch.no_grad()
    def daydream(self, n_steps: int, n_dreams: int = 1, *, trace: bool = False):
        """Let the machine run freely from uniform random visible probabilities.

        Returns the final visible states of ``n_dreams`` chains after ``n_steps`` sweeps, or with
        ``trace=True`` every step of one chain: row 0 is the random start, row i the state after i
        sweeps (the small seed's ``daydream``).
        """
        m = self._fitted()
        g = self._generator()
        n = 1 if trace else n_dreams
        v = torch.rand(n, m.n_visible, generator=g, dtype=m.W.dtype, device=m.W.device)
        rows = [v]
        h = m.start(v, generator=g).h
        for _ in range(n_steps):
            s = m.gibbs(h, 1, generator=g)
            h = s.h
            rows.append(s.v)
        out = torch.cat(rows) if trace else rows[-1]
        return out.cpu().numpy()

    # ------------------------------------------------------------------ sklearn attributes
    @property
    def components_(self) -> np.ndarray:
        """Weights as (n_hidden, n_visible), like scikit-learn's BernoulliRBM."""
        return self._fitted().W.detach().T.cpu().numpy()

    @property
    def intercept_visible_(self) -> np.ndarray:
        return self._fitted().visible.bias.detach().cpu().numpy()

    @property
    def intercept_hidden_(self) -> np.ndarray:
        return self._fitted().hidden.bias.detach().cpu().numpy()

    # ------------------------------------------------------------------ model files
    _COPIED_PARAM_DEFAULT = {"W_init": 0.01}

    def _model_config(self) -> dict[str, Any]:
        m = self.model_
        return {"units": {"visible": units_config(m.visible), "hidden": units_config(m.hidden)}}

    @classmethod
    def _expected_shapes(cls, config: dict) -> dict[str, Any]:
        nv, nh = config.get("n_features_in"), config.get("params", {}).get("n_hidden")
        for name, v in (("n_features_in", nv), ("n_hidden", nh)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"model file declares an invalid {name}: {v!r}")
        return {"model.W": (nv, nh), "model.visible.bias": (nv,), "model.hidden.bias": (nh,),
                "model.visible.log_sigma?": (nv,), "model.hidden.log_sigma?": (nh,),
                "model.visible_offset?": (nv,), "model.hidden_offset?": (nh,), "rng?": None,
                "trainer.*": None, "params.*": None}

    def _make_model(self, config: dict, state: dict[str, Tensor]) -> RBMModel:
        units = config["units"]
        model = RBMModel(make_units(units["visible"], config["n_features_in"]),
                         make_units(units["hidden"], self.n_hidden))
        for key in ("visible_offset", "hidden_offset"):
            if key in state:
                setattr(model, key, torch.zeros_like(state[key]))
        return model

    def _check_chains(self, chains: dict[str, Tensor], model: RBMModel) -> None:
        if "h" in chains and (chains["h"].ndim != 2 or chains["h"].shape[1] != self.n_hidden):
            raise ValueError(f"saved chains have shape {tuple(chains['h'].shape)}, expected (n, {self.n_hidden})")

    # ------------------------------------------------------------------ other constructors
    @classmethod
    def from_arrays(cls, W, visible_bias, hidden_bias, *, visible: Any = "bernoulli", hidden: Any = "bernoulli",
                    dtype: str = "float32", device: str = "cpu", **params) -> "RBM":
        """A fitted estimator with the given weights (n_visible, n_hidden) and biases."""
        W = np.asarray(W, dtype=np.float64)
        if W.ndim != 2:
            raise ValueError(f"W must be 2-D (n_visible, n_hidden), got shape {W.shape}")
        est = cls(n_hidden=W.shape[1], visible=visible, hidden=hidden, W_init=W, vb_init=visible_bias,
                  hb_init=hidden_bias, dtype=dtype, device=device, **params)
        est._check_params()
        est._build(torch.zeros(1, W.shape[0], dtype=_DTYPES[dtype], device=device))
        return est


def _preset(name: str, doc: str, **defaults) -> type[RBM]:
    """A subclass of RBM that differs only in defaults, with a full signature (sklearn's get_params)."""
    sig = inspect.signature(RBM.__init__)
    new_sig = sig.replace(parameters=[p.replace(default=defaults[p.name]) if p.name in defaults else p
                                      for p in sig.parameters.values()])

    def __init__(self, *args, **kwargs):
        bound = new_sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        RBM.__init__(**bound.arguments)

    __init__.__signature__ = new_sig
    __init__.__doc__ = doc
    return type(name, (RBM,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


BernoulliRBM = _preset("BernoulliRBM", "RBM with binary visible and hidden units (the default RBM).")
GaussianBernoulliRBM = _preset(
    "GaussianBernoulliRBM",
    "RBM with Gaussian visible units (unit sigma unless told: standardise the data) and binary hidden units.",
    visible="gaussian", learning_rate=0.001)
BernoulliMultinomialRBM = _preset(
    "BernoulliMultinomialRBM",
    "RBM with binary visible units and one softmax hidden unit over all hidden units (the seed's B-M RBM); "
    "pass hidden={'name': 'multinomial', 'n_draws': n} for n draws.",
    hidden="multinomial")


for _cls in (RBM, BernoulliRBM, GaussianBernoulliRBM, BernoulliMultinomialRBM):
    io.register_estimator(_cls)
