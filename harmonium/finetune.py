"""Discriminative fine-tuning: a pretrained RBM, DBN or DBM turned into a feed-forward classifier.

``FineTunedClassifier(pretrained)`` copies the pretrained weights into a multilayer perceptron whose
hidden layers compute the mean of the pretrained hidden units given their input (sigmoid for
Bernoulli units, softmax per group for softmax units, identity plus bias for Gaussian units), puts a
new linear softmax output layer on top and trains the whole network by backpropagation of the
cross-entropy (Hinton & Salakhutdinov 2006; for the DBM, Salakhutdinov & Hinton 2009).  With
``pretrained=None`` the same architecture starts from a random initialisation: the baseline of the
"few labels" comparisons.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from torch import Tensor, nn

from . import distributed
from .base import _DTYPES, BoltzmannEstimator
from .dbm import DBMModel
from .deep import DBM, DBN
from .estimators import RBM
from .learning import DivergenceError, ParameterAverage
from .units import Bernoulli, Units

__all__ = ["FineTunedClassifier", "FineTuneNetwork", "UnitsLayer"]

#: rows per chunk when predicting or computing the DBM's mean-field posteriors
PREDICT_CHUNK = 8192


def _identity_statistic(units: Units) -> bool:
    return type(units).statistic is Units.statistic


def _frozen(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with no gradients and no trainable parameters."""
    m = copy.deepcopy(module)
    for p in m.parameters():
        p.grad = None
        p.requires_grad_(False)
    return m


def _dropout(x: Tensor, p: float, generator: torch.Generator | None) -> Tensor:
    """Inverted dropout: each entry kept with probability 1 - p and scaled by 1 / (1 - p)."""
    if p <= 0:
        return x
    keep = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) >= p
    return x * keep / (1.0 - p)


class UnitsLayer(nn.Module):
    """One hidden layer: ``units.mean(T(x) @ weight)``, optionally with extra input.

    ``weight`` has shape (n_in, n_out) (the library's W layout).  ``units`` is a (copied) ``Units``
    layer whose bias, and any other parameter, is trained; its ``mean`` is the activation (sigmoid
    of ``a + b`` for Bernoulli, softmax per group for softmax units, ``b + sigma a`` for Gaussian).
    ``input_units``, when given, is a frozen ``Units`` whose statistic T is applied to the layer's
    input first (Gaussian inputs are divided by their sigma); otherwise T is the identity.
    ``extra`` inputs (the DBM's top-down messages) are appended to T(x) before the product.
    """

    def __init__(self, weight: Tensor, units: Units, input_units: Units | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.units = units
        self.input_units = input_units

    @property
    def n_in(self) -> int:
        return self.weight.shape[0]

    @property
    def n_out(self) -> int:
        return self.weight.shape[1]

    def forward(self, x: Tensor, extra: Tensor | None = None) -> Tensor:
        t = x if self.input_units is None else self.input_units.statistic(x)
        if extra is not None:
            t = torch.cat([t, extra], dim=1)
        return self.units.mean(t @ self.weight)

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_out={self.n_out}"


class _Output(nn.Module):
    """The linear output layer: logits = x @ weight + bias, weight of shape (n_in, n_classes)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_out))

    def forward(self, x: Tensor) -> Tensor:
        return torch.addmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"n_in={self.weight.shape[0]}, n_out={self.weight.shape[1]}"


class FineTuneNetwork(nn.Module):
    """The classifier's network: hidden ``layers`` (``UnitsLayer``) and a linear ``output`` layer.

    ``forward(v)`` returns the logits for visible rows ``v``.  For a network made from a DBM with
    L >= 2 hidden layers, ``dbm`` holds a frozen copy of the DBM and ``extra_sizes[l]`` the width of
    the extra input of hidden layer l (the statistic of the mean-field posterior of the layer above,
    see ``FineTunedClassifier``); ``augment(v)`` computes those extra inputs (all concatenated) and
    ``forward(v, extras)`` uses precomputed ones.  Dropout, when asked for, is applied to every
    hidden activation with the given generator (never the global one).
    """

    def __init__(self, layers: Sequence[UnitsLayer], output: _Output, *, dbm: DBMModel | None = None,
                 extra_sizes: Sequence[int] | None = None, mf_settings: dict | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.output = output
        self.dbm = dbm
        self.extra_sizes = list(extra_sizes) if extra_sizes is not None else [0] * len(layers)
        self.mf_settings = dict(mf_settings or {})

    @property
    def n_extra(self) -> int:
        return sum(self.extra_sizes)

    @torch.no_grad()
    def augment(self, v: Tensor) -> Tensor | None:
        """The extra inputs [T_2(q_2), ..., T_L(q_L)] from the DBM's mean field given v (None without a DBM)."""
        if self.dbm is None or not self.n_extra:
            return None
        parts = []
        for start in range(0, v.shape[0], PREDICT_CHUNK):
            chunk = v[start:start + PREDICT_CHUNK]
            q, _ = self.dbm.mean_field(chunk, **self.mf_settings)
            parts.append(torch.cat([self.dbm.layers[l].statistic(q[l]) for l in range(2, self.dbm.n_layers)], 1))
        return torch.cat(parts)

    def hidden(self, v: Tensor, extras: Tensor | None = None, *, dropout: float = 0.0, input_dropout: float = 0.0,
               generator: torch.Generator | None = None) -> list[Tensor]:
        """The activations of every hidden layer, bottom to top; with (inverted) dropout of the
        visible input and of every hidden layer's output when given."""
        if extras is None and self.n_extra:
            extras = self.augment(v)
        pieces = [None] * len(self.layers)
        if self.n_extra:
            pieces = list(torch.split(extras, self.extra_sizes, dim=1))
        out, h = [], _dropout(v, input_dropout, generator)
        for layer, extra, size in zip(self.layers, pieces, self.extra_sizes):
            h = _dropout(layer(h, extra if size else None), dropout, generator)
            out.append(h)
        return out

    def forward(self, v: Tensor, extras: Tensor | None = None, *, dropout: float = 0.0, input_dropout: float = 0.0,
                generator: torch.Generator | None = None) -> Tensor:
        hs = self.hidden(v, extras, dropout=dropout, input_dropout=input_dropout, generator=generator)
        return self.output(hs[-1] if hs else v)


class FineTunedClassifier(ClassifierMixin, BaseEstimator):
    """A classifier fine-tuned from a fitted ``RBM``, ``DBN`` or ``DBM`` (or from scratch).

    The network
    -----------
    Weights are in the library's layout, W of shape (n_in, n_out); every hidden layer computes
    ``h = units.mean(T(x) W)`` where ``units`` is a copy of the pretrained hidden layer's ``Units``
    (its bias is trained) and T the statistic of the layer below (the identity for Bernoulli and
    softmax units, x / sigma for Gaussian units).  The output layer is a new linear layer with a
    softmax, initialised U(-1/sqrt(n_in), 1/sqrt(n_in)) like PyTorch's default.

    * ``RBM``: input -> units.mean(v W + c) -> softmax, W and c copied from the RBM (a centered RBM's
      visible offset mu is folded into the bias, c - mu W, so the layer computes the RBM's E[h | v]).
    * ``DBN``: the up-pass of every RBM of the stack in turn, then the softmax.
    * ``DBM`` with hidden layers h_1 ... h_L and weights W_0 ... W_{L-1} (Salakhutdinov & Hinton
      2009): the mean-field posteriors q_2, ..., q_L given v are computed once by the DBM's
      fixed-point iteration (for the training rows before training, for new rows at predict time,
      from a frozen copy of the DBM with its ``max_mf_updates``, ``mf_tol`` and ``mf_damping``) and
      the input is augmented with them.  Hidden layer l < L receives the concatenation
      [h_{l-1}, T(q_{l+1})] (with h_0 = v) through the stacked weights [W_{l-1}; W_l^T] of shape
      (n_{l-1} + n_{l+1}, n_l), i.e. h_l = mean_l(h_{l-1} W_{l-1} + q_{l+1} W_l^T + b_l): its full
      mean-field input with the bottom-up part replaced by the network's own activations; the top
      layer receives h_{L-1} W_{L-1}.  For a two-layer DBM this is the construction of the paper:
      h_1 = sigmoid(v W_0 + q_2 W_1^T + b_1), h_2 = sigmoid(h_1 W_1 + b_2), softmax(h_2 U + d).  At
      initialisation the network reproduces the mean-field posteriors (h_l = q_l at the fixed
      point).  The copies of W_l in layers l and l + 1 are trained independently (untied).  A DBM
      with one hidden layer is treated like an RBM (no augmentation).
    * ``None``: the same architecture (sigmoid hidden layers of ``hidden_layer_sizes``) with
      PyTorch's default initialisation, U(-1/sqrt(n_in), 1/sqrt(n_in)) for weights and biases.

    The pretrained estimator is never modified: its parameters are deep-copied into ``network_``.

    Parameters
    ----------
    pretrained : a fitted ``RBM`` (any preset), ``DBN`` or ``DBM``, a ``sklearn.frozen.FrozenEstimator``
        wrapping one, or None.  ``clone`` keeps the same (fitted) pretrained estimator.
    hidden_layer_sizes : sizes of the hidden layers for ``pretrained=None`` (required then); with a
        pretrained model it may be given only if equal to the pretrained sizes.
    optimizer : "adam" or "sgd" (momentum 0.9).
    learning_rate : base learning rate.
    lr_multipliers : one factor per layer (hidden layers bottom to top, then the output layer) by
        which the learning rate of that layer's parameters is multiplied, e.g. (0.1, 1.0) for a
        pretrained hidden layer and the new output layer; None for 1 everywhere.
    epochs : passes over the (training part of the) data at most.
    batch_size : rows per update.
    dropout : probability of dropping each hidden activation during training.
    input_dropout : probability of dropping each visible input during training (Srivastava et al.
        2014 use 0.2 on MNIST with 0.5 on the hidden layers).
    l2 : weight decay on the weights (not on biases).
    validation_fraction : share of the training rows held out (stratified) for early stopping.
    early_stopping : hold out ``validation_fraction`` of the rows, keep the weights of the best epoch
        by ``val_metric`` and stop after ``patience`` epochs without improvement.  Without it (or with
        ``validation_fraction=0``) every row is trained on and the last weights are kept.
    patience : epochs without improvement before stopping.
    ema_decay : keep an exponential moving average of the trainable parameters, updated after every
        step as a <- d_t a + (1 - d_t) theta with d_t = min(ema_decay, (1 + t) / (10 + t)) at step t (the
        warm-up keeps the initial weights from dominating), and use the average wherever the network
        is evaluated: on the validation rows, for the weights kept, and for predictions.  Averaging
        the last few epochs' weights smooths the noise of the steps (Polyak & Juditsky 1992); 0 turns
        it off.  Training itself follows the raw parameters either way.
    refit : after early stopping has chosen the number of epochs (``best_epoch_``), train the network
        again from the same initialisation on every row, validation rows included, for that many
        epochs with the learning rates the validated run used in each epoch, and keep the result
        (the protocol of Hinton & Salakhutdinov 2006: the held-out rows choose, then all rows train).
        Without a validation split there is nothing to refit and it has no effect.
    lr_patience : with a validation split, halve every learning rate after this many epochs without
        improvement of ``val_metric`` (torch's ``ReduceLROnPlateau``, factor 0.5); None keeps the
        learning rates constant.  Smaller than ``patience`` to be of use.
    val_metric : "accuracy" (ties broken by the lower loss) or "loss".
    random_state : int seed (or a ``RandomState`` from which one is drawn, or None for a fresh one).
        Initialisation, the validation split, shuffling and dropout use only local generators: the
        global torch and numpy random states are never touched.
    dtype : "float32" or "float64".  device : torch device of the network.
    verbose : 1 prints a line per epoch.

    Attributes
    ----------
    classes_, n_features_in_ : the class labels and the number of visible features.
    network_ : the trained ``FineTuneNetwork`` (a torch ``nn.Module``).
    optimizer_ : the torch optimizer; its parameter groups are named ``"layer{l}.weight"``,
        ``"layer{l}.bias"``, ``"output.weight"`` and ``"output.bias"`` (key ``"name"``), with the
        layer's index under ``"layer"`` (the output layer is the last index).
    history_ : per-epoch lists ``epoch``, ``train_loss``, ``lr_factor`` (the learning rates' factor
        against ``learning_rate`` during that epoch) and, with a validation split, ``val_loss`` and
        ``val_accuracy``.
    best_epoch_ : the epoch whose weights were kept (0: the initial ones).  n_iter_ : epochs run (in
        the validated run when refitting).
    refit_history_ : with ``refit`` and a validation split, the refit's ``epoch``, ``train_loss`` and
        ``lr_factor``; the network then holds the refit's weights.
    """

    def __init__(self, pretrained: Any = None, *, hidden_layer_sizes: Any = None, optimizer: str = "adam",
                 learning_rate: float = 1e-3, lr_multipliers: Any = None, epochs: int = 100, batch_size: int = 128,
                 dropout: float = 0.0, input_dropout: float = 0.0, l2: float = 1e-5, validation_fraction: float = 0.1,
                 early_stopping: bool = True, patience: int = 10, lr_patience: int | None = None,
                 ema_decay: float = 0.0, refit: bool = False, val_metric: str = "accuracy",
                 random_state: Any = None, dtype: str = "float32", device: str = "cpu", verbose: int = 0) -> None:
        self.pretrained = pretrained
        self.hidden_layer_sizes = hidden_layer_sizes
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.lr_multipliers = lr_multipliers
        self.epochs = epochs
        self.batch_size = batch_size
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.l2 = l2
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.lr_patience = lr_patience
        self.ema_decay = ema_decay
        self.refit = refit
        self.val_metric = val_metric
        self.random_state = random_state
        self.dtype = dtype
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------------ scikit-learn plumbing
    def __sklearn_clone__(self):
        """Clone every hyperparameter but ``pretrained``, which is shared: it is read, never modified."""
        params = self.get_params(deep=False)
        pretrained = params.pop("pretrained")
        return type(self)(pretrained=pretrained, **{k: clone(v, safe=False) for k, v in params.items()})

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.sparse = True  # converted to dense
        return tags

    @property
    def _torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    # the library's input conversion and validation (uses dtype, device and _torch_dtype)
    _to_tensor = BoltzmannEstimator._to_tensor
    _validate = BoltzmannEstimator._validate

    # ------------------------------------------------------------------ validation
    def _source(self):
        """The pretrained estimator (unwrapped from a FrozenEstimator), checked to be fitted."""
        p = self.pretrained
        if p is None:
            return None
        inner = getattr(p, "estimator", None)
        if type(p).__name__ == "FrozenEstimator" and inner is not None:
            p = inner
        if not isinstance(p, (RBM, DBN, DBM)):
            raise ValueError(f"pretrained must be a fitted harmonium RBM, DBN or DBM, or None; got {p!r}")
        try:
            check_is_fitted(p, "rbms_" if isinstance(p, DBN) else "model_")
        except NotFittedError:
            raise NotFittedError(f"the pretrained {type(p).__name__} is not fitted: fit it first (or pass "
                                 "pretrained=None to train from a random initialisation)") from None
        return p

    @staticmethod
    def _sizes_of(p) -> list[int]:
        if isinstance(p, RBM):
            return [p.model_.n_hidden]
        if isinstance(p, DBN):
            return [r.model_.n_hidden for r in p.rbms_]
        return p.model_.sizes[1:]

    def _check_params(self) -> tuple[Any, list[int]]:
        def integer(name, lo):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")

        def real(name, ok, what):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or not ok(v):
                raise ValueError(f"{name} must be {what}, got {v!r}")

        integer("epochs", 0)
        integer("batch_size", 1)
        integer("patience", 1)
        if self.lr_patience is not None:
            integer("lr_patience", 0)
        real("learning_rate", lambda v: v > 0, "a positive number")
        real("dropout", lambda v: 0 <= v < 1, "in [0, 1)")
        real("input_dropout", lambda v: 0 <= v < 1, "in [0, 1)")
        real("l2", lambda v: v >= 0, "a non-negative number")
        real("validation_fraction", lambda v: 0 <= v < 1, "in [0, 1)")
        real("ema_decay", lambda v: 0 <= v < 1, "in [0, 1)")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.val_metric not in ("accuracy", "loss"):
            raise ValueError(f"val_metric must be 'accuracy' or 'loss', got {self.val_metric!r}")
        for name in ("early_stopping", "refit"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.random_state is not None and (isinstance(self.random_state, bool) or not isinstance(
                self.random_state, (numbers.Integral, np.random.RandomState))):
            raise ValueError(f"random_state must be None, an int or a numpy RandomState, got {self.random_state!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"invalid device {self.device!r}: {e}") from None

        src = self._source()
        hs = self.hidden_layer_sizes
        sizes = None
        if hs is not None:
            sizes = [hs] if isinstance(hs, numbers.Integral) and not isinstance(hs, bool) else (
                list(hs) if isinstance(hs, (list, tuple, np.ndarray)) else None)
            if sizes is None or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1
                                    for s in sizes):
                raise ValueError(f"hidden_layer_sizes must be a positive integer or a sequence of them, got {hs!r}")
            sizes = [int(s) for s in sizes]
        if src is None:
            if sizes is None:
                raise ValueError("hidden_layer_sizes is required when pretrained is None (e.g. (500,))")
        else:
            have = self._sizes_of(src)
            if sizes is not None and sizes != have:
                raise ValueError(f"hidden_layer_sizes={hs!r} does not match the pretrained "
                                 f"{type(src).__name__}'s hidden layers {tuple(have)}; leave it None")
            sizes = have

        n_layers = len(sizes) + 1
        lrm = self.lr_multipliers
        if lrm is not None:
            vals = list(lrm) if isinstance(lrm, (list, tuple, np.ndarray)) else None
            if vals is None or len(vals) != n_layers:
                raise ValueError(f"lr_multipliers must have one entry per layer ({len(sizes)} hidden + the output "
                                 f"layer = {n_layers}), got {lrm!r}")
            for v in vals:
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
                    raise ValueError(f"lr_multipliers must be non-negative finite numbers, got {lrm!r}")
        return src, sizes

    # ------------------------------------------------------------------ random streams
    def _seed(self) -> int:
        seed = self.random_state
        if isinstance(seed, np.random.RandomState):
            return int(seed.randint(2 ** 31))
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2 ** 63)
            if distributed.current() is not None:  # one shared stream: rank 0's seed
                seed = distributed.broadcast_int(seed)
        return int(seed)

    # ------------------------------------------------------------------ building the network
    def _visible_units(self, src) -> Units | None:
        if isinstance(src, RBM):
            return src.model_.visible
        if isinstance(src, DBN):
            return src.rbms_[0].model_.visible
        if isinstance(src, DBM):
            return src.model_.layers[0]
        return None

    def _rbm_layer(self, m) -> UnitsLayer:
        """The up-pass of an RBMModel: units.mean((T(v) - mu) W up_factor)."""
        W = m.W.detach()
        if m.up_factor != 1.0:
            W = W * m.up_factor
        units = _frozen(m.hidden)
        if m.visible_offset is not None:
            units.shift_bias(-(m.visible_offset @ W))
        layer = UnitsLayer(W, units, None if _identity_statistic(m.visible) else _frozen(m.visible))
        return layer

    def _build(self, src, sizes: list[int], n_visible: int, n_classes: int, g: torch.Generator) -> FineTuneNetwork:
        dbm = extra = mf = None
        if src is None:
            layers, n_in = [], n_visible
            for n in sizes:
                bound = 1.0 / math.sqrt(n_in)
                W = (torch.rand(n_in, n, generator=g, dtype=torch.float64) * 2 - 1) * bound
                units = Bernoulli(n).to(torch.float64)
                with torch.no_grad():
                    units.bias.copy_((torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * bound)
                layers.append(UnitsLayer(W, units))
                n_in = n
        elif isinstance(src, RBM):
            layers = [self._rbm_layer(src.model_)]
        elif isinstance(src, DBN):
            layers = [self._rbm_layer(r.model_) for r in src.rbms_]
        else:
            m: DBMModel = src.model_
            L = m.n_layers - 1
            layers = []
            for l in range(1, L + 1):
                below = m.layers[l - 1]
                W = m.W[l - 1].detach()
                if l < L:
                    W = torch.cat([W, m.W[l].detach().T], 0)
                layers.append(UnitsLayer(W, _frozen(m.layers[l]),
                                         None if _identity_statistic(below) else _frozen(below)))
            if L >= 2:
                dbm = _frozen(m)
                extra = [m.layers[l + 1].n if l < L else 0 for l in range(1, L + 1)]
                mf = {"max_updates": int(src.max_mf_updates), "tol": float(src.mf_tol),
                      "damping": float(src.mf_damping)}
        for layer in layers:
            for p in layer.units.parameters():
                p.requires_grad_(True)
        n_top = sizes[-1] if sizes else n_visible
        out = _Output(n_top, n_classes)
        bound = 1.0 / math.sqrt(n_top)
        with torch.no_grad():
            out.weight.copy_((torch.rand(out.weight.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
            out.bias.copy_((torch.rand(out.bias.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
        net = FineTuneNetwork(layers, out, dbm=dbm, extra_sizes=extra, mf_settings=mf)
        return net.to(dtype=self._torch_dtype, device=self.device)

    def _make_optimizer(self, net: FineTuneNetwork) -> torch.optim.Optimizer:
        n_layers = len(net.layers) + 1
        mult = [1.0] * n_layers if self.lr_multipliers is None else [float(v) for v in self.lr_multipliers]
        lr = float(self.learning_rate)
        groups = []
        for l, layer in enumerate(net.layers):
            groups.append({"params": [layer.weight], "lr": lr * mult[l], "weight_decay": float(self.l2),
                           "name": f"layer{l}.weight", "layer": l})
            groups.append({"params": [p for p in layer.units.parameters() if p.requires_grad], "lr": lr * mult[l],
                           "weight_decay": 0.0, "name": f"layer{l}.bias", "layer": l})
        last = n_layers - 1
        groups.append({"params": [net.output.weight], "lr": lr * mult[last], "weight_decay": float(self.l2),
                       "name": "output.weight", "layer": last})
        groups.append({"params": [net.output.bias], "lr": lr * mult[last], "weight_decay": 0.0,
                       "name": "output.bias", "layer": last})
        if self.optimizer == "adam":
            return torch.optim.Adam(groups, lr=lr)
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)

    # ------------------------------------------------------------------ data
    def _input(self, X, what: str = "X") -> Tensor:
        """X as a validated tensor of the network's dtype and device."""
        units = getattr(self, "_visible_", None)
        if units is not None:
            return self._to_tensor(X, what, units)
        t = self._to_tensor(X, what)
        n = getattr(self, "n_features_in_", None)
        if n is not None and t.shape[1] != n:
            raise ValueError(f"{what} has {t.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{n} features as input")
        return t

    def _split(self, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Indices of the training and validation rows (stratified when every class allows it)."""
        n = len(y)
        idx = np.arange(n)
        if not (self.early_stopping and self.validation_fraction > 0):
            return idx, None
        n_val = int(math.ceil(self.validation_fraction * n))
        if n_val < 1 or n - n_val < 1:
            return idx, None
        counts = np.bincount(y)
        stratify = y if counts.min() >= 2 and n_val >= len(counts) and n - n_val >= len(counts) else None
        tr, va = train_test_split(idx, test_size=n_val, random_state=seed, stratify=stratify)
        return np.sort(tr), np.sort(va)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y) -> "FineTunedClassifier":
        """Build the network from ``pretrained`` (or at random) and train it on (X, y)."""
        src, sizes = self._check_params()
        for attr in ("network_", "optimizer_", "_visible_", "n_features_in_", "classes_", "refit_history_"):
            self.__dict__.pop(attr, None)
        vis = self._visible_units(src)
        self._visible_ = None if vis is None else _frozen(vis).to(dtype=self._torch_dtype, device=self.device)
        Xt = self._input(X)
        n_visible = Xt.shape[1]
        if src is not None and src.n_features_in_ != n_visible:  # pragma: no cover - caught by the units check
            raise ValueError(f"X has {n_visible} features, the pretrained model {src.n_features_in_}")
        y_np = y.detach().cpu().numpy() if isinstance(y, Tensor) else y
        y_np = column_or_1d(np.asarray(y_np), warn=True)
        if len(y_np) != Xt.shape[0]:
            raise ValueError(f"X has {Xt.shape[0]} rows but y has {len(y_np)} labels")
        check_classification_targets(y_np)
        classes, y_idx = np.unique(y_np, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y has only one class ({classes[0]!r}); a classifier needs at least 2")
        self.classes_ = classes
        self.n_features_in_ = n_visible

        seed = self._seed()
        rng = np.random.default_rng(seed)
        g_seed = int(rng.integers(2 ** 63))
        g = torch.Generator(device=self.device).manual_seed(g_seed)
        init_seed = int(rng.integers(2 ** 63))  # CPU generator for the initial weights
        net = self._build(src, sizes, n_visible, len(classes), torch.Generator().manual_seed(init_seed))
        self.network_ = net
        self.optimizer_ = self._make_optimizer(net)
        self.history_: dict[str, list] = {"epoch": [], "train_loss": [], "lr_factor": []}
        self.best_epoch_ = 0
        self.n_iter_ = 0

        extras = net.augment(Xt)  # the DBM's mean-field posteriors, once
        yt = torch.as_tensor(y_idx, dtype=torch.int64, device=Xt.device)
        tr, va = self._split(y_idx, int(rng.integers(2 ** 31)))
        pick = (lambda t, i: None if t is None else t[torch.as_tensor(i, device=t.device)])
        X_tr, E_tr, y_tr = pick(Xt, tr), pick(extras, tr), pick(yt, tr)
        if va is not None:
            X_va, E_va, y_va = pick(Xt, va), pick(extras, va), pick(yt, va)
            self.history_.update(val_loss=[], val_accuracy=[])
        self._train(net, X_tr, E_tr, y_tr, None if va is None else (X_va, E_va, y_va), g, self.history_)
        if self.refit and va is not None:
            # the same initialisation and streams, every row, the validated run's epochs and learning
            # rates: with constant rates, exactly the fit without validation for best_epoch_ epochs
            g.manual_seed(g_seed)
            net = self._build(src, sizes, n_visible, len(classes), torch.Generator().manual_seed(init_seed))
            self.network_ = net
            self.optimizer_ = self._make_optimizer(net)
            self.refit_history_ = {"epoch": [], "train_loss": [], "lr_factor": []}
            self._train(net, Xt, extras, yt, None, g, self.refit_history_,
                        schedule=self.history_["lr_factor"][:self.best_epoch_])
        return self

    def _train(self, net, X, E, y, val, g, history: dict, schedule: list[float] | None = None) -> None:
        """Mini-batch training with early stopping, recorded in ``history``; with ``schedule`` (and no
        ``val``), exactly ``len(schedule)`` epochs with the learning rates scaled by its factors.
        Under a torch.distributed process group each rank takes its share of every batch
        (``batch_size`` stays global) and the gradients are summed over ranks before each step, as
        ``DistributedDataParallel`` would; dropout masks then come from a per-rank stream and ``g``
        only shuffles."""
        opt = self.optimizer_
        n = X.shape[0]
        bs = int(self.batch_size)
        p, p_in = float(self.dropout), float(self.input_dropout)
        group = distributed.current()
        g_drop = g
        if group is not None:
            distributed.broadcast_(list(net.parameters()))
            g_drop = torch.Generator(device=g.device)
            g_drop.manual_seed(int(g.initial_seed()) + 1_000_003 * (group.rank + 1))
        best_key, best_state, since = None, None, 0
        plateau = None
        if val is not None and self.lr_patience is not None:
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5,
                                                                 patience=int(self.lr_patience))
        ema = ParameterAverage(net, float(self.ema_decay)) if self.ema_decay > 0 else None
        base_lr = [pg["lr"] for pg in opt.param_groups]
        ref = max(range(len(base_lr)), key=base_lr.__getitem__)  # a group whose factor can be read
        last_epoch = self.epochs if schedule is None else len(schedule)
        for epoch in range(1, last_epoch + 1):
            if schedule is not None:
                for pg, lr in zip(opt.param_groups, base_lr):
                    pg["lr"] = lr * schedule[epoch - 1]
            lr_factor = opt.param_groups[ref]["lr"] / base_lr[ref] if base_lr[ref] > 0 else 1.0
            net.train()
            order = torch.randperm(n, generator=g, device=g.device).to(X.device)
            total = X.new_zeros(())
            for start in range(0, n, bs):
                i = order[start:start + bs]
                n_batch = i.shape[0]
                if group is not None:
                    lo, hi = distributed.shard_bounds(n_batch, group)
                    i = i[lo:hi]
                logits = net(X[i], None if E is None else E[i], dropout=p, input_dropout=p_in,
                             generator=g_drop)
                loss = F.cross_entropy(logits, y[i], reduction="sum") / n_batch
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if group is not None:
                    distributed.all_reduce_sum_([q.grad for q in net.parameters() if q.grad is not None])
                opt.step()
                if ema is not None:
                    ema.update()
                total += loss.detach() * n_batch
            if group is not None:
                distributed.all_reduce_sum_([total])
            train_loss = float(total) / n
            if not math.isfinite(train_loss):
                raise DivergenceError(f"training diverged in epoch {epoch}: the loss became NaN or infinite; "
                                      f"the learning rate ({self.learning_rate}) is probably too large")
            if schedule is None:
                self.n_iter_ = epoch
                if val is None:
                    self.best_epoch_ = epoch
            h = history
            h["epoch"].append(epoch)
            h["train_loss"].append(train_loss)
            h["lr_factor"].append(lr_factor)
            line = f"{'refit ' if schedule is not None else ''}epoch {epoch:4d}  train_loss {train_loss:.5g}"
            if ema is not None:
                ema.swap()  # evaluate (and keep) the averaged weights
            if val is not None:
                val_loss, val_acc = self._evaluate(net, *val)
                h["val_loss"].append(val_loss)
                h["val_accuracy"].append(val_acc)
                line += f"  val_loss {val_loss:.5g}  val_accuracy {val_acc:.4f}"
                key = (val_acc, -val_loss) if self.val_metric == "accuracy" else (-val_loss,)
                if best_key is None or key > best_key:
                    best_key, since = key, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()
                                  if not k.startswith("dbm.")}
                    self.best_epoch_ = epoch
                else:
                    since += 1
                if plateau is not None:
                    plateau.step(val_acc if self.val_metric == "accuracy" else -val_loss)
            if ema is not None and epoch < last_epoch:
                ema.swap()  # back to the raw weights to go on training
            if self.verbose >= 1:
                print(line, flush=True)
            if val is not None and since >= self.patience:
                break
        if best_state is not None:
            net.load_state_dict(best_state, strict=False)
        net.eval()

    @torch.no_grad()
    def _evaluate(self, net, X, E, y) -> tuple[float, float]:
        net.eval()
        logits = self._logits(net, X, E)
        return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).double().mean())

    @staticmethod
    def _logits(net, X, E) -> Tensor:
        parts = [net(X[s:s + PREDICT_CHUNK], None if E is None else E[s:s + PREDICT_CHUNK])
                 for s in range(0, X.shape[0], PREDICT_CHUNK)]
        return torch.cat(parts)

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def _predict_logits(self, X) -> Tensor:
        check_is_fitted(self, "network_")
        Xt = self._input(X)
        net = self.network_
        net.eval()
        return self._logits(net, Xt, net.augment(Xt))

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_`` (a tensor for tensor input)."""
        p = torch.softmax(self._predict_logits(X), dim=1)
        return p if isinstance(X, Tensor) else p.cpu().numpy()

    def predict_log_proba(self, X):
        """Log class probabilities (a tensor for tensor input)."""
        p = torch.log_softmax(self._predict_logits(X), dim=1)
        return p if isinstance(X, Tensor) else p.cpu().numpy()

    def decision_function(self, X):
        """The logits of the output layer, shape (n_samples, n_classes); for two classes, as in
        scikit-learn, the difference of the two logits, shape (n_samples,) (a tensor for tensor input)."""
        z = self._predict_logits(X)
        if z.shape[1] == 2:
            z = z[:, 1] - z[:, 0]
        return z if isinstance(X, Tensor) else z.cpu().numpy()

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row (a numpy array of labels from ``classes_``)."""
        best = self._predict_logits(X).argmax(1).cpu().numpy()
        return self.classes_[best]
