"""Ways to draw the Bernoulli hidden states of one CD update (100 x 1024 by default) on the CPU,
timed in one process: torch's ``rand`` + ``lt`` (what harmonium does), ``torch.bernoulli``, and an
exact lazy comparison that draws 8 random bits per unit (three units per 31-bit word) and a full uniform only where those bits tie
with the top 8 bits of p (1 unit in 256), giving the same decisions as a 24-bit uniform.  Prints
milliseconds per draw and checks that each method's mean matches p.

    python benchmarks/bernoulli_draws.py [--rows 100] [--cols 1024] [--threads 1] [--reps 300]

docs/BENCHMARKS.md ("What limits us") quotes its figures.
"""
from __future__ import annotations

import argparse
import time

import torch


def rand_lt(p: torch.Tensor, g: torch.Generator, u: torch.Tensor) -> torch.Tensor:
    torch.rand(p.shape, generator=g, out=u)
    return torch.lt(u, p, out=u)


def bernoulli(p: torch.Tensor, g: torch.Generator, u: torch.Tensor) -> torch.Tensor:
    return torch.bernoulli(p, generator=g)


def lazy_bytes(p: torch.Tensor, g: torch.Generator, words: torch.Tensor) -> torch.Tensor:
    """u = (b + f) / 256 with b a random byte and f uniform in [0, 1): u < p decided by b alone unless
    b == floor(256 p), where f is drawn (for those units only) and compared with the remainder.
    ``random_()`` fills an int32 with 31 random bits, so each word gives its three low bytes."""
    words.random_(generator=g)
    b = words.view(torch.uint8).view(-1, 4)[:, :3].reshape(-1)[: p.numel()].view(p.shape).to(p.dtype)
    s = p * 256.0
    h = torch.le(b + 1.0, s)  # b + f < s for every f
    tie = torch.lt(b, s) & ~h  # b < s < b + 1: depends on f
    idx = tie.nonzero(as_tuple=True)
    if idx[0].numel():
        f = torch.rand(idx[0].shape, generator=g, dtype=p.dtype)
        h[idx] = f < (s[idx] - b[idx])
    return h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--cols", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    p = torch.rand(args.rows, args.cols, generator=g)
    u = torch.empty_like(p)
    words = torch.empty((p.numel() + 2) // 3, dtype=torch.int32)
    methods = {"rand + lt": (rand_lt, u), "torch.bernoulli": (bernoulli, u), "lazy 8-bit": (lazy_bytes, words)}
    for name, (fn, buf) in methods.items():
        for _ in range(20):
            fn(p, g, buf)
        t = time.perf_counter()
        for _ in range(args.reps):
            fn(p, g, buf)
        ms = (time.perf_counter() - t) / args.reps * 1e3
        # correctness: the mean of many draws at a fixed p (one that is not a multiple of 1/256)
        q = torch.full((2000, 1000), 0.3 + 1 / 512)
        big = torch.empty_like(q)
        big_words = torch.empty((q.numel() + 2) // 3, dtype=torch.int32)
        mean = float(fn(q, g, big_words if buf is words else big).float().mean())
        print(f"{name:16s} {ms:6.3f} ms per {args.rows} x {args.cols} draw; mean at p = {float(q[0, 0]):.6f}: "
              f"{mean:.6f} (+- {3 * (q[0, 0] * (1 - q[0, 0]) / q.numel()) ** 0.5:.6f} at 3 sigma)")
    words.random_(generator=g)
    t = time.perf_counter()
    for _ in range(args.reps):
        words.random_(generator=g)
    print(f"(the lazy draw's random bytes alone: {(time.perf_counter() - t) / args.reps * 1e3:.3f} ms)")


if __name__ == "__main__":
    main()
