"""What every harmonium estimator shares: input conversion and validation, its own random
generator, scikit-learn tags, pickling, and the model-file state (see ``harmonium.io``)."""

from __future__ import annotations

import hashlib
import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted
from torch import Tensor

from . import distributed, io
from .learning import DivergenceError, TrainerBase, at_epoch
from .units import Units, all_finite, units_config

__all__ = ["BoltzmannEstimator"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: trainer state tensors saved in model files besides the optimizer state and the chains:
#: the damped hidden activity of the sparsity penalty, a DBM's centering offsets
_TRAINER_TENSORS = ("hidden_activity", "offsets")
#: rows validated at a time (bounds the temporary boolean masks of the support checks)
_VALIDATE_ROWS = 8192


def _encode_params(params: dict[str, Any], tensors: dict[str, Tensor], prefix: str = "params") -> dict[str, Any]:
    """Hyperparameters as JSON: unit types as their configuration, arrays as tensors named
    ``<prefix>.<name>`` (added to ``tensors``), an estimator given as a parameter by its class name;
    dicts and lists (a DBN's per-layer ``rbm_params``) entry by entry.  A callable is refused."""
    def encode(name: str, value: Any) -> Any:
        if isinstance(value, Units):
            return {"__units__": units_config(value)}
        if isinstance(value, BaseEstimator) or (isinstance(value, (list, tuple)) and value
                                                 and all(isinstance(v, BaseEstimator) for v in value)):
            return {"__copied_from__": type(value).__name__ if isinstance(value, BaseEstimator)
                    else [type(v).__name__ for v in value]}
        if isinstance(value, (np.ndarray, Tensor)):
            tensors[name] = torch.as_tensor(np.asarray(value.cpu() if isinstance(value, Tensor) else value))
            return {"__tensor__": name}
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if isinstance(value, type) and issubclass(value, Units):
            return {"__units__": {"name": value.name}}
        if isinstance(value, dict):
            return {str(k): encode(f"{name}.{k}", v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [encode(f"{name}.{i}", v) for i, v in enumerate(value)]
        if callable(value):
            raise ValueError(f"cannot save {name[len(prefix) + 1:]}={value!r}: a callable is code; use a named option")
        return value
    return {name: encode(f"{prefix}.{name}", value) for name, value in params.items()}


def _decode_params(params: dict[str, Any], tensors: dict[str, Tensor], copied: dict[str, Any]) -> dict[str, Any]:
    """The inverse of ``_encode_params``; an estimator given as a parameter comes back as ``copied[name]``."""
    def decode(name: str, value: Any) -> Any:
        if isinstance(value, dict):
            if "__units__" in value:
                return value["__units__"]
            if "__tensor__" in value:
                return tensors[value["__tensor__"]].numpy()
            if "__copied_from__" in value:
                return copied.get(name)
            return {k: decode(k, v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(name, v) for v in value]
        return value
    return {name: decode(name, value) for name, value in params.items()}


def _schedule_ok(value, name: str, positive: bool, integer: bool = False) -> None:
    values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    if not values:
        raise ValueError(f"{name} must be a number or a non-empty sequence of numbers")
    for x in values:
        if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x):
            raise ValueError(f"{name} must be a finite number or a sequence of such, got {value!r}")
        if integer and (int(x) != x or x < 1):
            raise ValueError(f"{name} must be an integer >= 1 (or a sequence of such), got {value!r}")
        if positive and x <= 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
        if not positive and x < 0:
            raise ValueError(f"{name} must be non-negative, got {value!r}")



def _restore_generator(state: Tensor, saved_on: str, device) -> torch.Generator:
    """A generator on ``device`` that continues the saved random stream.  A stream saved on another
    kind of device cannot continue (a CUDA generator's state is a seed and an offset, the CPU's a
    Mersenne twister); the new generator is then seeded from the saved state's bytes: reproducible,
    but not the draws the other device would have made."""
    g = torch.Generator(device=device)
    if g.device.type != saved_on:
        digest = hashlib.sha256(state.cpu().numpy().tobytes()).digest()
        return g.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    try:
        g.set_state(state)
    except RuntimeError as e:
        raise ValueError(f"invalid random generator state: {e}") from None
    return g


class BoltzmannEstimator(TransformerMixin, BaseEstimator):
    """Base class: subclasses define ``__init__`` (with ``dtype``, ``device``, ``random_state``),
    ``_check_params``, ``fit``, ``model_`` and the model-file hooks ``_model_config``,
    ``_expected_shapes``, ``_make_model`` and ``_check_chains``."""

    #: values substituted on load for hyperparameters that were fitted estimators when saved
    _COPIED_PARAM_DEFAULT: dict[str, Any] = {}

    def _fitted(self):
        check_is_fitted(self, "model_")
        return self.model_

    # -- validation helpers shared by the estimators' ``_check_params`` --------------------------
    def _check_integers(self, **bounds: int) -> None:
        """Each named hyperparameter is an integer >= its bound (None allowed for a negative bound's
        absolute value: ``n_chains=-1`` means "None or >= 1")."""
        for name, lo in bounds.items():
            v = getattr(self, name)
            if v is None and lo < 0:
                continue
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < abs(lo):
                raise ValueError(f"{name} must be an integer >= {abs(lo)}, got {v!r}")

    def _check_common(self) -> None:
        """Learning rate, momentum, dtype, optimizer, device and seed: what every trained estimator has."""
        _schedule_ok(self.learning_rate, "learning_rate", positive=True)
        _schedule_ok(self.momentum, "momentum", positive=False)
        if any(m >= 1 for m in np.atleast_1d(self.momentum)):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        self._check_placement()
        optimizer = getattr(self, "optimizer", "sgd")
        if optimizer not in ("sgd", "adam") and not callable(optimizer):
            raise ValueError(f"optimizer must be 'sgd', 'adam' or a callable(params), got {optimizer!r}")
        if getattr(self, "checkpoint_path", None) is not None and callable(optimizer):
            raise ValueError("checkpoints cannot store a callable optimizer; use 'sgd' or 'adam'")
        ema = getattr(self, "ema_decay", 0.0)
        if isinstance(ema, bool) or not isinstance(ema, numbers.Real) or not 0 <= ema < 1:
            raise ValueError(f"ema_decay must be a number in [0, 1), got {ema!r}")

    def _check_placement(self) -> None:
        """dtype, seed and device: what every estimator has, trained or stacked."""
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.random_state is not None and not isinstance(self.random_state,
                                                            (numbers.Integral, np.random.RandomState)):
            raise ValueError(f"random_state must be None or an int, got {self.random_state!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device must be a torch device string such as 'cpu' or 'cuda:0', got "
                             f"{self.device!r} ({e})") from None

    def _append_history(self, epoch: int, values: dict[str, float]) -> None:
        """Add one recorded epoch to ``history_`` (None where a metric was not computed); under a
        process group the values (each rank's, on its share of the rows) are averaged over ranks."""
        group = distributed.current()
        if group is not None and values:
            keys = sorted(values)
            t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
            distributed.all_reduce_sum_([t])
            values = {k: float(v) / group.world_size for k, v in zip(keys, t.tolist())}
        h = self.history_
        h["epoch"].append(epoch)
        for key, val in values.items():
            h.setdefault(key, [None] * (len(h["epoch"]) - 1)).append(val)
        for seq in h.values():
            if len(seq) < len(h["epoch"]):
                seq.append(None)

    def _print_values(self, epoch: int, values: dict[str, float]) -> None:
        group = distributed.current()
        if self.verbose >= 1 and (group is None or group.is_main):
            print(f"epoch {epoch:4d}  " + "  ".join(f"{k} {v:.5g}" for k, v in values.items()), flush=True)

    def fit(self, X, y=None, *, X_val=None):
        """Train for ``epochs`` epochs counted from the start of training: a warm start (or an existing
        checkpoint) continues up to that number; otherwise the model is built afresh from X first."""
        self._check_params()
        warm = self.warm_start and hasattr(self, "model_")
        group = distributed.current()
        resume = self.checkpoint_path is not None and Path(self.checkpoint_path).exists()
        if group is not None:  # rank 0 decides, before any rank can have written a checkpoint
            resume = bool(distributed.broadcast_int(int(resume)))
        if resume:
            self._resume_from(self.checkpoint_path)
            warm = True
        if warm:
            self._check_continues()
        X = self._to_tensor(X)  # converted once: the training data is the largest thing in memory
        if not warm:
            for attr in ("_rng", "trainer_", "_trainer_state"):
                self.__dict__.pop(attr, None)
            self._build(X)
        units = self._visible_units()
        self._validate(X, "X", units)
        Xv = None if X_val is None else self._to_tensor(X_val, "X_val", units)
        self._join_group(X, built=not warm)
        trainer = self._trainer()
        self._run(trainer, X, Xv, max(0, self.epochs - trainer.epoch))
        return self

    def _check_continues(self) -> None:
        """A warm start or resume continues the fitted model: the hyperparameters that fix its
        structure (layer sizes, unit types, dtype) must still describe it."""
        def structure(units) -> tuple:  # sigma may be learned: not part of the structure
            return units.name, {k: v for k, v in units.config().items() if k != "sigma"}

        have = [structure(u) for u in self._fitted_layers()]
        try:
            want = [structure(u) for u in self._layers(self.n_features_in_)]
        except ValueError as e:
            want = str(e)
        dtype = next(self.model_.parameters()).dtype
        if want != have or dtype != self._torch_dtype:
            raise ValueError(f"warm_start: the fitted model has layers {have} in {dtype}, the hyperparameters ask "
                             f"for {want} in {self._torch_dtype}; set them back, or warm_start=False to train a "
                             f"new model")

    def _join_group(self, X: Tensor, built: bool) -> None:
        """Under a process group: check that every rank passes the same data and, for a model just
        built, start every rank from rank 0's parameters (as ``DistributedDataParallel`` does)."""
        if distributed.current() is not None:
            distributed.check_same_data(X)
            if built:
                distributed.broadcast_(list(self.model_.parameters()) + list(self.model_.buffers()))

    def _trainer(self) -> TrainerBase:
        """The fit loop's state for the current hyperparameters, built on first use (from a model
        file's saved state when there is one: built as it was saved, then reconfigured)."""
        config = self._config()
        if getattr(self, "trainer_", None) is None:
            pending = self.__dict__.pop("_trainer_state", None)
            self.trainer_ = self._make_trainer(config if pending is None else pending["config"])
            if pending is not None:
                self.trainer_.load_state_dict(pending)
        self.trainer_.reconfigure(config)
        return self.trainer_

    def _resume_from(self, path) -> None:
        """Adopt the fitted state of the checkpoint at ``path`` (same class and layer sizes)."""
        saved = io.load(path, device=self.device)
        same_sizes = np.array_equal(np.atleast_1d(saved.n_hidden), np.atleast_1d(self.n_hidden))  # tuple or list
        if type(saved) is not type(self) or not same_sizes or saved.dtype != self.dtype:
            raise ValueError(f"checkpoint {path} holds a {type(saved).__name__} with n_hidden={saved.n_hidden}, "
                             f"dtype={saved.dtype}; this estimator has n_hidden={self.n_hidden}, "
                             f"dtype={self.dtype}: remove the file or use another checkpoint_path")
        for attr in ("trainer_", "_trainer_state", "_rng"):
            self.__dict__.pop(attr, None)
        for attr in ("model_", "n_features_in_", "history_", "_rng", "_trainer_state"):
            if attr in saved.__dict__:
                setattr(self, attr, saved.__dict__[attr])

    def _run(self, trainer: TrainerBase, X: Tensor, X_val: Tensor | None, todo: int) -> None:
        group = trainer.group
        main = group is None or group.is_main  # only rank 0 writes files, logs and progress
        names = self._metric_names(X_val)
        self._logger = None
        if getattr(self, "log_dir", None) is not None and todo:
            names = names or ("reconstruction_error",)  # every rank computes what rank 0 logs
            if main:
                from .tensorboard import TensorBoardLogger
                self._logger = TensorBoardLogger(self.log_dir)
        Xm, Xvm = X, X_val  # the rows this rank evaluates metrics on
        if group is not None:
            Xm = X[slice(*distributed.shard_bounds(len(X), group))]
            if X_val is not None:
                Xvm = X_val[slice(*distributed.shard_bounds(len(X_val), group))]
        bar = None
        if self.verbose >= 2 and main:
            from tqdm.auto import tqdm
            bar = tqdm(total=todo, desc="epochs", unit="epoch", disable=None)  # off when not a terminal
        trainer.use_live()  # training follows the live parameters; metrics, files and the result the average
        try:
            for i in range(todo):
                snap = trainer.snapshot()
                trainer.run_epoch(X)
                if not trainer.is_finite():
                    trainer.restore(snap)
                    raise DivergenceError(
                        f"training diverged in epoch {trainer.epoch + 1}: parameters, gradients or chains became "
                        f"NaN or infinite; the learning rate ({at_epoch(self.learning_rate, trainer.epoch)}) is "
                        "probably too large for this data. The estimator is back at its state before that epoch"
                        + (" and the last checkpoint is intact." if self.checkpoint_path else "."))
                last = trainer.epoch == self.epochs or i == todo - 1 and not self.checkpoint_path
                with trainer.averaged():
                    if names and (trainer.epoch % self.metrics_every == 0 or last):
                        self._record(trainer.epoch, names, Xm, Xvm)
                    if self.checkpoint_path is not None and (trainer.epoch % self.checkpoint_every == 0 or last):
                        trainer.gather_state()
                        if main:
                            io.save(self, self.checkpoint_path)
                        if group is not None:
                            distributed.barrier()  # the file is complete before any rank goes on
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v[-1]:.4g}" for k, v in self.history_.items()
                                     if k != "epoch" and v and v[-1] is not None})
        finally:
            trainer.use_average()
        trainer.gather_state()  # so that ``save`` (on any rank) writes every rank's chains
        if bar is not None:
            bar.close()
        if self._logger is not None:
            self._logger.close()
        del self._logger

    @property
    def _torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def _to_tensor(self, X, what: str = "X", units: Units | None = None) -> Tensor:
        """Convert to a tensor of the model's dtype and device, validated; the input is never modified."""
        if isinstance(X, Tensor):
            t = X.detach()
            if t.is_complex():
                raise ValueError(f"Complex data not supported: {what} has dtype {t.dtype}")
            if t.ndim != 2:
                raise ValueError(f"Expected a 2-D {what} (n_samples, n_features), got shape {tuple(t.shape)}. "
                                 "Reshape your data with X.reshape(-1, 1) or X.reshape(1, -1)")
            if t.shape[0] == 0 or t.shape[1] == 0:
                raise ValueError(f"Found array with {t.shape[0]} sample(s) and {t.shape[1]} feature(s) "
                                 f"(shape={tuple(t.shape)}) while a minimum of 1 is required.")
        else:
            # scikit-learn's own checks give the messages users know (shape, dtype, NaN, empty)
            np_dtype = np.float64 if self.dtype == "float64" else np.float32
            a = check_array(X, dtype=np_dtype, accept_sparse=False if not hasattr(X, "toarray") else "csr",
                            ensure_all_finite=True, input_name=what)
            if hasattr(a, "toarray"):
                a = a.toarray()
            fresh = a is not X and a.base is None and a.flags.writeable  # check_array already copied
            t = torch.from_numpy(a if fresh else np.array(a, dtype=np_dtype, copy=True))
        t = t.to(dtype=self._torch_dtype, device=self.device)
        self._validate(t, what, units)
        return t

    def _validate(self, t: Tensor, what: str, units: Units | None) -> None:
        """The feature count and the unit type's support (finiteness without ``units``), checked in
        chunks of rows so that the temporary masks stay small next to the data."""
        if units is not None and t.shape[1] != units.n:
            raise ValueError(f"{what} has {t.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{units.n} features as input")
        for chunk in t.split(_VALIDATE_ROWS):
            if units is not None:
                units.validate(chunk, what)
            elif not all_finite(chunk):
                raise ValueError(f"{what} contains NaN or infinite values")

    # ------------------------------------------------------------------ construction
    def _generator(self) -> torch.Generator:
        """The estimator's own random stream (global torch/numpy state is never used)."""
        if not hasattr(self, "_rng"):
            seed = self.random_state
            if isinstance(seed, np.random.RandomState):
                seed = int(seed.randint(2 ** 31))
            elif seed is None:
                seed = int(np.random.SeedSequence().entropy % 2 ** 63)
                if distributed.current() is not None:  # one shared stream: rank 0's seed
                    seed = distributed.broadcast_int(seed)
            self._rng = torch.Generator(device=self.device)
            self._rng.manual_seed(int(seed))
        return self._rng

    def _array(self, value, shape, name) -> Tensor:
        t = torch.as_tensor(np.asarray(value, dtype=np.float64)).to(self._torch_dtype)
        if t.ndim == 0:
            t = t.expand(shape)
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return t.to(self.device)

    def _out(self, t: Tensor, like) -> Any:
        return t.detach() if isinstance(like, Tensor) else t.detach().cpu().numpy()

    @property
    def epochs_trained_(self) -> int:
        """Epochs of training so far (across warm starts and resumed model files)."""
        self._fitted()
        t = getattr(self, "trainer_", None)
        if t is not None:
            return t.epoch
        return int(getattr(self, "_trainer_state", {}).get("epoch", 0))


    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # converted to dense
        tags.transformer_tags.preserves_dtype = [self.dtype]
        tags.non_deterministic = False
        return tags

    def __getstate__(self):
        state = self.__dict__.copy()
        if "_rng" in state:
            state["_rng"] = state["_rng"].get_state()
        return state

    def __setstate__(self, state):
        rng = state.get("_rng")
        if isinstance(rng, Tensor):
            g = torch.Generator(device=state.get("device", "cpu"))
            g.set_state(rng)
            state["_rng"] = g
        self.__dict__.update(state)

    def save(self, path) -> "Path":
        """Save the fitted estimator (weights, hyperparameters, training state) atomically; see ``harmonium.io``."""
        self._fitted()
        return io.save(self, path)

    def _get_state(self) -> tuple[dict, dict[str, Tensor]]:
        m = self._fitted()
        tensors: dict[str, Tensor] = {f"model.{k}": v for k, v in m.state_dict().items()}
        params = _encode_params(self.get_params(deep=False), tensors)
        trainer: dict[str, Any] | None = None
        has_state = getattr(self, "trainer_", None) is not None or hasattr(self, "_trainer_state")
        st = self._trainer().state_dict() if has_state else None  # the state of the current hyperparameters
        if st is not None:
            opt = st["optimizer"]
            opt_keys: dict[str, dict[str, Any]] = {}
            for idx, pstate in opt["state"].items():
                for key, val in pstate.items():
                    if isinstance(val, Tensor):
                        tensors[f"trainer.optimizer.state.{idx}.{key}"] = val
                        opt_keys.setdefault(str(idx), {})[key] = "__tensor__"
                    else:
                        opt_keys.setdefault(str(idx), {})[key] = val
            for key, val in st["chains"].items():
                tensors[f"trainer.chains.{key}"] = val
            for key in _TRAINER_TENSORS:
                if st.get(key) is not None:
                    tensors[f"trainer.{key}"] = st[key]
            trainer = {"epoch": st["epoch"], "optimizer_param_groups": opt["param_groups"],
                       "optimizer_state": opt_keys}
            average = st.get("average")
            if average is not None:  # the parameters the model does not hold: live or averaged
                for key, val in average["shadow"].items():
                    tensors[f"trainer.average.{key}"] = val
                trainer["average"] = {"updates": average["updates"], "swapped": average["swapped"]}
        rng_device = None
        if hasattr(self, "_rng"):
            tensors["rng"] = self._rng.get_state()
            rng_device = self._rng.device.type
        config = {"params": params, "n_features_in": int(self.n_features_in_), "rng_device": rng_device,
                  **self._model_config(), "history": self.history_, "trainer": trainer}
        return config, tensors

    @classmethod
    def _unfitted_from_state(cls, config: dict, tensors: dict[str, Tensor], device: str | None):
        """A new estimator with the saved hyperparameters (``device`` given: on that device)."""
        params = _decode_params(config["params"], tensors, cls._COPIED_PARAM_DEFAULT)
        if device is not None:
            params["device"] = device
        return cls(**params)

    @classmethod
    def _from_state(cls, config: dict, tensors: dict[str, Tensor], device: str | None = None):
        est = cls._unfitted_from_state(config, tensors, device)
        est._check_params()
        nv = config["n_features_in"]
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        model = est._make_model(config, state).to(dtype=est._torch_dtype)
        want = est._torch_dtype
        for k, v in state.items():
            if v.dtype != want:
                raise ValueError(f"tensor {k!r} has dtype {v.dtype}, the configuration says {est.dtype}")
            if not torch.isfinite(v).all():
                raise ValueError(f"tensor {k!r} contains NaN or infinite values")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"model tensors do not match the configuration: {e}") from None
        est.model_ = model.to(dtype=want, device=est.device)
        est.n_features_in_ = nv
        est.history_ = config.get("history") or {"epoch": []}
        if "rng" in tensors:
            est._rng = _restore_generator(tensors["rng"], config.get("rng_device") or "cpu", est.device)
        tr = config.get("trainer")
        if tr is not None:
            opt_state: dict[int, dict[str, Any]] = {}
            params_list = list(est.model_.parameters())
            for idx, keys in tr["optimizer_state"].items():
                i = int(idx)
                if not 0 <= i < len(params_list):
                    raise ValueError(f"optimizer state for unknown parameter {idx}")
                d = {}
                for key, val in keys.items():
                    if val == "__tensor__":
                        val = tensors[f"trainer.optimizer.state.{idx}.{key}"]
                        if val.ndim:  # per-parameter buffers go to the device; step counts stay on the host
                            val = val.to(est.device)
                        if val.ndim and val.shape != params_list[i].shape:
                            raise ValueError(f"optimizer state {idx}.{key} has shape {tuple(val.shape)}, "
                                             f"parameter has {tuple(params_list[i].shape)}")
                    d[key] = val
                opt_state[i] = d
            chains = {k[len("trainer.chains."):]: v.to(est.device) for k, v in tensors.items()
                      if k.startswith("trainer.chains.")}
            est._check_chains(chains, model)
            average = None
            if tr.get("average") is not None:
                shadow = {k[len("trainer.average."):]: v for k, v in tensors.items()
                          if k.startswith("trainer.average.")}
                params = dict(est.model_.named_parameters())
                if set(shadow) != set(params):
                    raise ValueError(f"the saved parameter average has tensors {sorted(shadow)}, the model "
                                     f"has {sorted(params)}")
                for k, v in shadow.items():
                    if v.shape != params[k].shape or v.dtype != want or not torch.isfinite(v).all():
                        raise ValueError(f"saved parameter average {k!r} ({tuple(v.shape)}, {v.dtype}) does not "
                                         f"match the parameter ({tuple(params[k].shape)}, {want}) or is not finite")
                average = {"updates": int(tr["average"]["updates"]), "swapped": bool(tr["average"]["swapped"]),
                           "shadow": {k: v.to(est.device) for k, v in shadow.items()}}
            # the optimizer is built when training resumes (loading stays cheap for inference)
            est._trainer_state = {
                "config": est._config(),  # the sampler and optimizer the state was saved with
                "epoch": int(tr["epoch"]),
                "optimizer": {"state": opt_state, "param_groups": tr["optimizer_param_groups"]},
                "chains": chains,
                **{key: tensors[f"trainer.{key}"].to(est.device) if f"trainer.{key}" in tensors else None
                   for key in _TRAINER_TENSORS},
                "average": average,
            }
        return est

