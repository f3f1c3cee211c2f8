"""The fit loop: batches, the gradient estimate, regularisers, schedules and the optimizer.

One update on a batch v+ of data:

1. positive phase  h+ = E[h | v+] (and hidden states drawn for the chains),
2. negative phase  (v-, h-) from the strategy (CD, PCD, parallel tempering),
3. ``RBMModel.write_gradient`` sets ``.grad`` to <dE/dtheta>_data - <dE/dtheta>_model,
4. regularisers add to ``.grad``: L2 on W, the sparsity penalty,
5. ``optimizer.step()`` (plain SGD with momentum by default, any torch optimizer allowed),
6. max-norm on the incoming weights of each hidden unit, centering offsets.

Nothing in an update reads a value back to the host: metrics are computed once per epoch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .rbm import RBMModel
from .sampling import make_negative_phase

__all__ = ["TrainingConfig", "TrainerBase", "Trainer", "MomentumSGD", "DivergenceError", "at_epoch",
           "make_optimizer", "batches"]

Schedule = float | int | Sequence[float] | Sequence[int]


def at_epoch(value: Schedule, epoch: int):
    """The value of a constant or per-epoch sequence at ``epoch`` (the last entry repeats)."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, str)):
        if len(value) == 0:
            raise ValueError("an empty schedule")
        return value[min(epoch, len(value) - 1)]
    return value


class DivergenceError(FloatingPointError):
    """Training produced NaN or infinite parameters or chains (an ``ArithmeticError``)."""


class MomentumSGD(torch.optim.Optimizer):
    """SGD with momentum whose velocity lives in each parameter's ``.grad``.

    The gradient writer accumulates ``grad <- momentum * grad + g`` inside the matrix products
    (``RBMModel.write_gradient(momentum=...)``) and ``step`` only does ``p <- p - lr * grad``:
    the arithmetic of ``torch.optim.SGD(momentum=m, dampening=0)`` without its extra passes
    over the weights.  The velocity is saved as the usual ``momentum_buffer`` state.
    """

    accumulates_momentum = True

    def __init__(self, params, lr: float, momentum: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """The update itself, without ``Optimizer.step``'s hooks (the trainer calls this per batch)."""
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            if ps:
                torch._foreach_add_(ps, [p.grad for p in ps], alpha=-group["lr"])

    def state_dict(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.state[p]["momentum_buffer"] = p.grad
        return super().state_dict()

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            for p in group["params"]:
                buf = self.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    p.grad = buf.detach().clone()


@dataclass
class TrainingConfig:
    """The hyperparameters the loop needs (validated by the estimator)."""

    learning_rate: Schedule = 0.05
    momentum: Schedule = 0.9
    k: Schedule = 1
    batch_size: int = 10
    persistent: bool = False
    n_chains: int | None = None
    n_temperatures: int = 1
    l2: float = 0.0
    dropout: float | None = None
    sparsity_target: float | None = None
    sparsity_cost: float = 0.0
    sparsity_damping: float = 0.9
    max_norm: float | None = None
    centering: bool = False
    centering_rate: float = 0.01
    sample_v_states: bool = False
    sample_h_states: bool = True
    optimizer: str | Callable[..., torch.optim.Optimizer] = "sgd"


def make_optimizer(spec: str | Callable, params: list, learning_rate: Schedule, momentum: Schedule):
    """The optimizer for ``spec``: "sgd" (``MomentumSGD``), "adam", or a callable(params)."""
    lr0 = float(at_epoch(learning_rate, 0))
    if callable(spec):
        return spec(params)
    if spec == "sgd":
        return MomentumSGD(params, lr=lr0, momentum=float(at_epoch(momentum, 0)))
    if spec == "adam":
        return torch.optim.Adam(params, lr=lr0)
    raise ValueError(f"unknown optimizer {spec!r}; use 'sgd', 'adam' or a callable(params)")


def batches(X: Tensor, batch_size: int, generator: torch.Generator):
    """Shuffled batches of X, gathered into one reused buffer (valid until the next batch)."""
    n = X.shape[0]
    perm = torch.randperm(n, generator=generator, device=X.device)
    buf = X.new_empty((min(batch_size, n), X.shape[1]))
    for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        out = buf if len(idx) == len(buf) else buf[: len(idx)]
        yield torch.index_select(X, 0, idx, out=out)


class TrainerBase:
    """What every fit loop keeps between updates: the optimizer, schedules, the epoch counter,
    the divergence guard and the resume state.  Subclasses own the chains (``_chains`` and
    ``_load_chains``) and the update (``run_epoch``)."""

    def __init__(self, model: torch.nn.Module, config: Any, generator: torch.Generator) -> None:
        self.model = model
        self.config = config
        self.generator = generator
        self.epoch = 0
        self.optimizer = make_optimizer(config.optimizer, list(model.parameters()), config.learning_rate,
                                        config.momentum)
        self.hidden_activity: Tensor | None = None  # damped mean hidden activity for sparsity
        self._grad_momentum = 0.0
        self._fused = isinstance(self.optimizer, MomentumSGD)

    def _apply_schedules(self) -> None:
        c, e = self.config, self.epoch
        if not callable(c.optimizer):
            for g in self.optimizer.param_groups:
                g["lr"] = float(at_epoch(c.learning_rate, e))
                if "momentum" in g:
                    g["momentum"] = float(at_epoch(c.momentum, e))
        accumulates = getattr(self.optimizer, "accumulates_momentum", False)
        self._grad_momentum = float(at_epoch(c.momentum, e)) if accumulates else 0.0

    def _optimizer_step(self) -> None:
        if self._fused:
            self.optimizer.apply()
        else:
            self.optimizer.step()

    def _chains(self) -> dict[str, Tensor]:
        return {}

    def _load_chains(self, chains: dict[str, Tensor]) -> None:
        pass

    # -- divergence guard ------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A copy of everything an epoch changes (parameters, optimizer, chains, random state)."""
        return {"model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "trainer": copy.deepcopy(self.state_dict()), "rng": self.generator.get_state()}

    def restore(self, snap: dict[str, Any]) -> None:
        self.model.load_state_dict(snap["model"])
        self.load_state_dict(copy.deepcopy(snap["trainer"]))
        self.generator.set_state(snap["rng"])

    def is_finite(self) -> bool:
        """Whether parameters, gradients and chains are all finite (one host sync)."""
        tensors = [t for p in self.model.parameters() for t in (p, p.grad) if t is not None]
        tensors += [t for t in self._chains().values() if t.is_floating_point()]
        return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    # -- state for resuming ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"epoch": self.epoch, "optimizer": self.optimizer.state_dict(),
                                 "chains": self._chains()}
        if self.hidden_activity is not None:
            state["hidden_activity"] = self.hidden_activity
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._load_chains(state.get("chains", {}))
        self.hidden_activity = state.get("hidden_activity")


class Trainer(TrainerBase):
    """Runs epochs of updates on an ``RBMModel``; the negative-phase strategy keeps the chains."""

    def __init__(self, model: RBMModel, config: TrainingConfig, generator: torch.Generator) -> None:
        super().__init__(model, config, generator)
        c = config
        self.phase = make_negative_phase(c.persistent, c.n_chains or c.batch_size, c.n_temperatures)

    def _chains(self) -> dict[str, Tensor]:
        return self.phase.state_dict()

    def _load_chains(self, chains: dict[str, Tensor]) -> None:
        self.phase.load_state_dict(chains)

    # -- one update ------------------------------------------------------------------------
    def step(self, v: Tensor, k: int) -> None:
        c, m, g = self.config, self.model, self.generator
        if c.dropout:
            keep = torch.rand(v.shape, generator=g, dtype=v.dtype, device=v.device) >= c.dropout
            v = v * keep
        pos = m.start(v, sample_h=c.sample_h_states, generator=g)
        neg = self.phase.negative(m, pos, k, sample_v=c.sample_v_states, sample_h=c.sample_h_states,
                                  generator=g)
        m.write_gradient(v, pos.h_mean, neg.v, neg.h_mean, momentum=self._grad_momentum)
        W = m.W
        if c.l2:
            W.grad.add_(W.detach(), alpha=c.l2)
        if c.sparsity_target is not None and c.sparsity_cost:
            q_batch = pos.h_mean.mean(0)
            if self.hidden_activity is None:
                self.hidden_activity = q_batch.detach().clone()
            else:
                self.hidden_activity.mul_(c.sparsity_damping).add_(q_batch, alpha=1 - c.sparsity_damping)
            # d/d(input) of the cross-entropy between target and activity, through the bias and W
            d = (self.hidden_activity - c.sparsity_target) * c.sparsity_cost
            m.hidden.bias.grad.add_(d)
            W.grad.addr_(v.mean(0), d)
        self._optimizer_step()
        if c.max_norm is not None:
            with torch.no_grad():
                norms = W.norm(dim=0, keepdim=True).clamp_min_(c.max_norm)
                W.mul_(c.max_norm / norms)
        if c.centering:
            r = c.centering_rate
            mu = torch.lerp(m.visible_offset, m.visible.statistic(v).mean(0), r)
            lam = torch.lerp(m.hidden_offset, m.hidden.statistic(pos.h_mean).mean(0), r)
            m.set_offsets(mu, lam)

    def run_epoch(self, X: Tensor) -> None:
        """One pass over X (on the model's device) in shuffled batches."""
        self._apply_schedules()
        k = int(at_epoch(self.config.k, self.epoch))
        with torch.no_grad():
            for v in batches(X, self.config.batch_size, self.generator):
                self.step(v, k)
        self.epoch += 1
