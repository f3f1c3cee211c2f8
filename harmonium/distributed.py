"""Data-parallel training across processes with ``torch.distributed``.

Launch the same program in every process (``torchrun --nproc-per-node N ...``); each estimator's
``fit`` finds the process group (or initialises one from torchrun's environment variables) and

* every rank holds the whole training set and takes its contiguous share of every *global* batch
  (``batch_size`` stays the global batch size, so results do not depend on the number of ranks);
* each rank writes its rows' share of the likelihood gradient, weighted by 1 / (global rows),
  and one all-reduce (sum) of all gradients and batch means makes the global estimate on
  every rank.  Momentum accumulated in ``.grad`` is added by rank 0 only, so the sum carries it
  exactly once and every rank ends with the same velocity;
* persistent chains / particles are split across ranks (gathered for model files, split again
  on resume, for any number of ranks);
* the shuffling stream is shared (same seed on every rank) and the sampling stream differs per
  rank (re-derived from the shared stream at every epoch, so a resumed run is reproducible);
* metrics are computed on each rank's share of the rows and averaged;
* only rank 0 writes checkpoints, logs, progress bars and prints.

With one process (or no process group) none of this runs: ``current()`` is None.
"""

from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Group", "current", "shard_bounds", "reseed_rank_stream", "all_reduce_sum_", "all_true", "gather_rows", "split_rows",
           "broadcast_", "broadcast_int", "check_same_data", "barrier"]


@dataclass(frozen=True)
class Group:
    """This process's place in the running process group."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() else None


def current() -> Group | None:
    """The running process group, initialised from torchrun's environment variables (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) when there is none yet; None for one process.

    The backend is gloo for CPU tensors and, where CUDA is available, nccl for GPU tensors
    (``"cpu:gloo,cuda:nccl"``); under torchrun each process then uses GPU ``LOCAL_RANK``.  A group
    created here is destroyed at interpreter exit (``atexit``); one you created is yours to close.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 and "MASTER_ADDR" in os.environ
    if not launched and "torch.distributed" not in sys.modules:
        return None  # nobody made a group, and importing torch.distributed costs ~60 MB resident
    dist = _dist()
    if dist is None:
        return None
    if not dist.is_initialized():
        if not launched:
            return None
        backend = "gloo"
        if torch.cuda.is_available() and dist.is_nccl_available():
            backend = "cpu:gloo,cuda:nccl"
            if "LOCAL_RANK" in os.environ:
                torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(backend)
        atexit.register(_destroy)  # a group we created is closed before the interpreter exits
    world = dist.get_world_size()
    return None if world == 1 else Group(dist.get_rank(), world)


def _destroy() -> None:
    dist = _dist()
    if dist is not None and dist.is_initialized():
        dist.destroy_process_group()


def shard_bounds(n: int, group: Group) -> tuple[int, int]:
    """[start, stop) of this rank's contiguous share of n items (the first n % world ranks get one more)."""
    q, r = divmod(n, group.world_size)
    start = group.rank * q + min(group.rank, r)
    return start, start + q + (1 if group.rank < r else 0)


def reseed_rank_stream(stream: torch.Generator, shared: torch.Generator, group: Group) -> None:
    """Seed this rank's sampling ``stream`` from the ``shared`` (shuffling) stream without advancing
    it: shuffles stay those of a single process, every rank samples differently, and a run resumed
    from the shared stream's saved state draws the same numbers again."""
    state = shared.get_state()
    seed = int(torch.randint(2 ** 62, (1,), generator=shared, device=shared.device).item())
    shared.set_state(state)
    stream.manual_seed(seed + 1_000_003 * group.rank)


def all_reduce_sum_(tensors: list[Tensor]) -> None:
    """Sum each tensor over the ranks, in place, with one collective per dtype."""
    dist = _dist()
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for ts in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in ts])
        dist.all_reduce(flat)
        offset = 0
        for t in ts:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def all_true(flag: bool, device) -> bool:
    """Whether ``flag`` holds on every rank."""
    dist = _dist()
    t = torch.tensor([0 if flag else 1], device=device)
    dist.all_reduce(t)
    return int(t.item()) == 0


def gather_rows(t: Tensor, dim: int = 0) -> Tensor:
    """Every rank's ``t`` concatenated along ``dim`` in rank order (shares may differ in size)."""
    dist = _dist()
    world = dist.get_world_size()
    size = torch.tensor([t.shape[dim]], device=t.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes_ = [int(s.item()) for s in sizes]
    most = max(sizes_)
    if t.shape[dim] < most:
        pad_shape = list(t.shape)
        pad_shape[dim] = most - t.shape[dim]
        t = torch.cat([t, t.new_zeros(pad_shape)], dim)
    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat([p.narrow(dim, 0, s) for p, s in zip(parts, sizes_)], dim)


def split_rows(t: Tensor, group: Group, dim: int = 0) -> Tensor:
    """This rank's contiguous share of ``t`` along ``dim`` (see ``shard_bounds``)."""
    start, stop = shard_bounds(t.shape[dim], group)
    return t.narrow(dim, start, stop - start).clone()


def broadcast_(tensors, src: int = 0) -> None:
    """Overwrite the tensors with rank ``src``'s values."""
    dist = _dist()
    for t in tensors:
        dist.broadcast(t.data if hasattr(t, "data") else t, src)


def broadcast_int(value: int, device="cpu", src: int = 0) -> int:
    """Rank ``src``'s integer on every rank."""
    dist = _dist()
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(t, src)
    return int(t.item())


def check_same_data(X: Tensor, what: str = "X") -> None:
    """Raise the same ValueError on every rank unless all ranks hold the same shape and sum of X
    (data-parallel training expects every process to pass the whole training set)."""
    dist = _dist()
    stats = torch.tensor([X.shape[0], X.shape[1], float(X.double().sum())], dtype=torch.float64, device=X.device)
    lo, hi = stats.clone(), stats.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not (torch.equal(lo[:2], hi[:2]) and (hi[2] - lo[2]).abs() <= 1e-9 * lo[2].abs().clamp_min(1.0)):
        raise ValueError(f"{what} differs between ranks (rows {int(lo[0])}..{int(hi[0])}, features {int(lo[1])}.."
                         f"{int(hi[1])}, sums {lo[2].item():.6g}..{hi[2].item():.6g}): in data-parallel training "
                         "every process passes the whole training set and takes its share of each batch")


def barrier() -> None:
    dist = _dist()
    dist.barrier()
