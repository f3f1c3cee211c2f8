"""How much would a CUDA graph of one training update buy?  A probe, before building it into the library.

    python benchmarks/cuda_graph_probe.py [--hidden 1024] [--batches 10 100 1000] [--updates 2000]

On a CUDA device, for a hand-written CD-1 update in bare torch (the same work as ``throughput.py``'s
"by hand" loop: sigmoids, the hidden draw, momentum, L2, the parameter step), prints samples per
second for the matrix products alone (the limit; eager and captured as a graph), the update run
eagerly, and the update captured once as a CUDA graph and replayed with each batch copied into its
static input buffer.  The first run
on an H200 (docs/BENCHMARKS.md) found batch-100 updates bound by ~30 kernel launches: eager 0.32 of
the limit.  If the replay reaches ~0.8 there, the library's loop should capture its update too.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import handwritten_update  # noqa: E402  (the same update as throughput.py's "by hand")


def rates(n_visible: int, n_hidden: int, batch: int, updates: int, device: torch.device) -> dict[str, float]:
    g = torch.Generator(device).manual_seed(0)
    X = (torch.rand(batch * 16, n_visible, generator=g, device=device) < 0.2).float()
    W = torch.randn(n_visible, n_hidden, generator=g, device=device) * 0.01
    b, c = torch.zeros(n_visible, device=device), torch.zeros(n_hidden, device=device)
    gW, gb, gc = torch.zeros_like(W), torch.zeros_like(b), torch.zeros_like(c)
    v_in = torch.empty(batch, n_visible, device=device)

    def update() -> None:  # reads v_in, writes in place, draws from the default generator: capturable
        handwritten_update(v_in, W, b, c, gW, gb, gc, 1, None)

    def limit() -> None:
        h = v_in @ W
        vn = h @ W.T
        hn = vn @ W
        gW.addmm_(vn.T, hn, beta=0.0).addmm_(v_in.T, h, alpha=-1.0)

    def timed(step) -> float:
        for i in range(20):  # warm-up
            v_in.copy_(X[(i % 16) * batch:(i % 16 + 1) * batch])
            step()
        torch.cuda.synchronize(device)
        t = time.perf_counter()
        for i in range(updates):
            v_in.copy_(X[(i % 16) * batch:(i % 16 + 1) * batch])
            step()
        torch.cuda.synchronize(device)
        return updates * batch / (time.perf_counter() - t)

    def captured(step) -> torch.cuda.CUDAGraph:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up on a side stream before capture, as torch's docs ask
            for _ in range(3):
                step()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        return graph

    return {"limit": timed(limit), "eager": timed(update), "limit_graph": timed(captured(limit).replay),
            "graph": timed(captured(update).replay)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--batches", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--updates", type=int, default=2000)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type != "cuda" or not torch.cuda.is_available():
        raise SystemExit("this probe needs a CUDA device")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}, CD-1 784x{args.hidden}, samples/s")
    print("limit: the products alone, eager and as a graph; ratios of the update to the eager limit and")
    print("of the graphed update to the graphed limit")
    print(f"{'batch':>6s} {'limit':>11s} {'limit graph':>12s} {'eager':>11s} {'graph':>11s} {'eager/limit':>12s} "
          f"{'graph/graph':>12s}")
    for batch in args.batches:
        r = rates(784, args.hidden, batch, args.updates, device)
        print(f"{batch:6d} {r['limit']:11.0f} {r['limit_graph']:12.0f} {r['eager']:11.0f} {r['graph']:11.0f} "
              f"{r['eager'] / r['limit']:12.2f} {r['graph'] / r['limit_graph']:12.2f}", flush=True)


if __name__ == "__main__":
    main()
