"""Training throughput of harmonium against the matrix-product limit and scikit-learn, in one run.

    python benchmarks/throughput.py [--quick] [--rounds R] [--device cuda] [--json out.json]

For each configuration it measures, in this process and interleaved over several rounds
(medians reported; the ratios are the medians of each round's ratio):
  * the limit: the same matrix products a training update needs (CD-k: 2k + 3 products;
    PCD-k: the same; tempering: the products of all replicas), as bare torch calls;
  * harmonium's ``fit`` throughput (samples per second) on binary data ("PCD-AVG": PCD with the
    parameters averaged, ``ema_decay=0.999``: what the moving average costs per update);
  * for CD and PCD, a hand-written bare-torch CD-k (PCD-k) loop with the sampling and update
    included ("by hand", as a fraction of the limit): what sampling costs without any library around
    it;
  * the same for a DBM's joint training step (mean field, particles, gradient);
and, in a subprocess with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, scikit-learn's
BernoulliRBM (PCD-1) on the same shapes.  Prints a table with the ratios.

On an accelerator (``--device cuda``) every timed region ends with a device synchronisation, the
data is made on the device, each configuration runs ten times as many rows (so that one fit runs well
past its fixed costs), batch 10,000 is added, and scikit-learn (a CPU library) is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

import harmonium as hm
from harmonium.experiments import cpu_model

N_VISIBLE = 784
DEVICE = torch.device("cpu")


def clock() -> float:
    """A host clock reading after the device has finished all work queued so far."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)
    return time.perf_counter()


def generator(seed: int) -> torch.Generator:
    return torch.Generator(DEVICE).manual_seed(seed)


def limit_rate(n_hidden: int, batch: int, k: int, replicas: int, dtype, reps: int) -> float:
    """Samples/s of the bare matrix products of one update (no sampling, no update)."""
    g = generator(0)
    W = torch.randn(N_VISIBLE, n_hidden, generator=g, dtype=dtype, device=DEVICE) * 0.01
    v = (torch.rand(batch * replicas, N_VISIBLE, generator=g, device=DEVICE) < 0.2).to(dtype)
    G = torch.zeros_like(W)
    vb = v[:batch]
    t = clock()
    for _ in range(reps):
        h = vb @ W  # positive phase
        hn = h if replicas == 1 else v @ W
        for _ in range(k):
            vn = hn @ W.T
            hn = vn @ W
        G.addmm_(vb.T, h[:batch], beta=0.0)
        G.addmm_(vn[:batch].T, hn[:batch], alpha=-1.0)
    return reps * batch / (clock() - t)


def handwritten_update(v, W, b, c, gW, gb, gc, k: int, generator: torch.Generator | None,
                       chains: torch.Tensor | None = None) -> None:
    """One CD-k update in bare torch, in place: the sigmoids, the hidden draws of every sweep and the
    visible draws of all sweeps but the last (the states the chain continues from; the last sweep's
    reconstruction is the means), the biases, momentum 0.5, L2 1e-4 and the step (learning rate
    0.01).  ``chains``: PCD-k instead, from these persistent hidden states (updated in place), every
    visible state drawn.  ``generator=None``: torch's default generator (the one a CUDA graph can
    capture)."""
    batch = v.shape[0]
    hp = torch.sigmoid(v @ W + c)
    h, hn = hp, hp if chains is None else chains
    for i in range(k):
        h = (torch.rand(hn.shape, generator=generator, dtype=v.dtype, device=v.device) < hn).to(v.dtype)
        vn = torch.sigmoid(h @ W.T + b)
        if i < k - 1 or chains is not None:
            vn = (torch.rand(vn.shape, generator=generator, dtype=v.dtype, device=v.device) < vn).to(v.dtype)
        hn = torch.sigmoid(vn @ W + c)
    if chains is not None:
        chains.copy_(hn)
    gW.addmm_(vn.T, hn, beta=0.5, alpha=1.0 / batch).addmm_(v.T, hp, alpha=-1.0 / batch)
    gb.mul_(0.5).add_(vn.mean(0) - v.mean(0))
    gc.mul_(0.5).add_(hn.mean(0) - hp.mean(0))
    gW.add_(W, alpha=1e-4)
    torch._foreach_add_([W, b, c], [gW, gb, gc], alpha=-0.01)


def handwritten_rate(n_hidden: int, batch: int, k: int, dtype, reps: int, persistent: bool = False) -> float:
    """Samples/s of a hand-written CD-k (``persistent``: PCD-k, one chain per batch row) loop in bare
    torch: the same products plus what any exact implementation must add -- the sigmoids, the
    uniform draws for the states of every sweep (torch's CPU generator fills them one at a time),
    the biases, momentum and L2 -- with none of the library's structure.  The gap between it and
    the limit is the cost of sampling itself."""
    g = generator(0)
    W = torch.randn(N_VISIBLE, n_hidden, generator=g, dtype=dtype, device=DEVICE) * 0.01
    b, c = torch.zeros(N_VISIBLE, dtype=dtype, device=DEVICE), torch.zeros(n_hidden, dtype=dtype, device=DEVICE)
    X = (torch.rand(batch * 8, N_VISIBLE, generator=g, device=DEVICE) < 0.2).to(dtype)
    gW, gb, gc = torch.zeros_like(W), torch.zeros_like(b), torch.zeros_like(c)
    chains = torch.full((batch, n_hidden), 0.5, dtype=dtype, device=DEVICE) if persistent else None
    t = clock()
    for r in range(reps):
        handwritten_update(X[(r % 8) * batch:(r % 8 + 1) * batch], W, b, c, gW, gb, gc, k, g, chains)
    return reps * batch / (clock() - t)


def harmonium_rate(n_hidden: int, batch: int, k: int, algo: str, dtype: str, n_rows: int) -> float:
    g = generator(1)
    X = (torch.rand(n_rows, N_VISIBLE, generator=g, device=DEVICE) < 0.2).to(getattr(torch, dtype))
    kw = dict(n_hidden=n_hidden, batch_size=batch, k=k, metrics=None, random_state=0, dtype=dtype, vb_init=0.0,
              device=str(DEVICE))
    if algo in ("pcd", "pcd-avg"):
        kw.update(persistent=True, ema_decay=0.999 if algo == "pcd-avg" else 0.0)
    elif algo == "pt":
        kw.update(n_temperatures=4, n_chains=batch)
    est = hm.RBM(epochs=1, **kw).fit(X[: batch * 3])  # warm-up: allocations, first-call costs
    est.set_params(warm_start=True, epochs=2)
    t = clock()
    est.fit(X)
    return n_rows / (clock() - t)


def dbm_limit_rate(sizes: tuple[int, ...], batch: int, n_particles: int, mf: int, k: int, dtype, reps: int) -> float:
    """Samples/s of the bare matrix products of one DBM update (two hidden layers): the bottom-up
    initialisation, ``mf`` mean-field sweeps, ``k`` Gibbs sweeps of the particles, the gradient."""
    g = generator(0)
    n0, n1, n2 = sizes
    W0 = torch.randn(n0, n1, generator=g, dtype=dtype, device=DEVICE) * 0.01
    W1 = torch.randn(n1, n2, generator=g, dtype=dtype, device=DEVICE) * 0.01
    v = (torch.rand(batch, n0, generator=g, device=DEVICE) < 0.2).to(dtype)
    p = [(torch.rand(n_particles, n, generator=g, device=DEVICE) < 0.5).to(dtype) for n in sizes]
    G0, G1 = torch.zeros_like(W0), torch.zeros_like(W1)
    t = clock()
    for _ in range(reps):
        h1 = v @ W0 * 2
        h2 = h1 @ W1
        for _ in range(mf):
            h1 = v @ W0 + h2 @ W1.T
            h2 = h1 @ W1
        x0, x1, x2 = p
        for _ in range(k):
            x1 = x0 @ W0 + x2 @ W1.T
            x0, x2 = x1 @ W0.T, x1 @ W1
        G0.addmm_(torch.cat([x0, v]).T, torch.cat([x1, h1]), beta=0.0)
        G1.addmm_(torch.cat([x1, h1]).T, torch.cat([x2, h2]), beta=0.0)
    return reps * batch / (clock() - t)


def dbm_harmonium_rate(sizes: tuple[int, ...], batch: int, n_particles: int, mf: int, k: int, dtype: str,
                       n_rows: int) -> float:
    g = generator(1)
    X = (torch.rand(n_rows, sizes[0], generator=g, device=DEVICE) < 0.2).to(getattr(torch, dtype))
    # mf_tol=0: exactly ``mf`` sweeps per batch, as in the limit
    kw = dict(batch_size=batch, n_particles=n_particles, max_mf_updates=mf, mf_tol=0.0, n_gibbs_steps=k,
              pretrain=False, metrics=None, random_state=0, dtype=dtype, device=str(DEVICE))
    est = hm.DBM(sizes[1:], epochs=1, **kw).fit(X[: batch * 3])
    est.set_params(warm_start=True, epochs=2)
    t = clock()
    est.fit(X)
    return n_rows / (clock() - t)


SKLEARN_CODE = r"""
import json, sys, time, numpy as np
from sklearn.neural_network import BernoulliRBM
n_hidden, batch, n_rows = map(int, sys.argv[1:4])
X = (np.random.default_rng(1).random((n_rows, 784)) < 0.2).astype(np.float32)
r = BernoulliRBM(n_components=n_hidden, batch_size=batch, n_iter=1, random_state=0)
r.fit(X[: batch * 3])  # warm-up
t = time.perf_counter(); r.fit(X); dt = time.perf_counter() - t  # one epoch of PCD-1 in batches
from threadpoolctl import threadpool_info
print(json.dumps({"rate": n_rows / dt, "blas": [i.get("internal_api") + ":" + str(i.get("architecture")) for i in threadpool_info()]}))
"""


def sklearn_rate(n_hidden: int, batch: int, n_rows: int) -> tuple[float, list]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    out = subprocess.run([sys.executable, "-c", SKLEARN_CODE, str(n_hidden), str(batch), str(n_rows)],
                         env=env, capture_output=True, text=True, check=True)
    d = json.loads(out.stdout.strip().splitlines()[-1])
    return d["rate"], d["blas"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer configurations and rounds")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="torch device to train on (default cpu)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    on_cpu = DEVICE.type == "cpu"
    configs = [  # (algo, k, n_hidden, batch, dtype)
        ("cd", 1, 1024, 100, "float32"), ("cd", 1, 1024, 10, "float32"), ("cd", 1, 1024, 1000, "float32"),
        ("cd", 1, 500, 100, "float32"), ("pcd", 1, 1024, 100, "float32"), ("pcd-avg", 1, 1024, 100, "float32"),
        ("cd", 10, 500, 100, "float32"),
        ("pt", 1, 500, 100, "float32"), ("cd", 1, 1024, 100, "float64"),
    ]
    if not on_cpu:
        configs.insert(3, ("cd", 1, 1024, 10000, "float32"))
    if args.quick:
        configs = configs[:2]
    rounds = 1 if args.quick else args.rounds
    results = []
    where = (f"{torch.get_num_threads()} threads, {cpu_model()} ({torch.backends.cpu.get_cpu_capability()})" if on_cpu
             else torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else str(DEVICE))
    print(f"torch {torch.__version__}, {where}")
    print(f"{'config':34s} {'limit/s':>9s} {'ours/s':>9s} {'ratio':>6s} {'by hand':>8s} {'sklearn/s':>10s} {'x sklearn':>9s}")
    for algo, k, nh, bs, dt in configs:
        n_rows = {10: 2000, 100: 10000, 1000: 20000, 10000: 20000}[bs] // (k if k > 1 else 1) * (1 if on_cpu else 10)
        replicas = 4 if algo == "pt" else 1
        reps = max(5, n_rows // bs)
        with_sklearn = algo in ("cd", "pcd") and k == 1 and dt == "float32" and on_cpu
        lims, ours, sks, hands = [], [], [], []
        limit_rate(nh, bs, k, replicas, getattr(torch, dt), 3)  # warm-up: library handles, kernels, caches
        for _ in range(rounds):  # interleaved, so that a slow spell of the machine hits all alike
            lims.append(limit_rate(nh, bs, k, replicas, getattr(torch, dt), reps))
            if algo in ("cd", "pcd"):
                hands.append(handwritten_rate(nh, bs, k, getattr(torch, dt), reps, persistent=algo == "pcd"))
            ours.append(harmonium_rate(nh, bs, k, algo, dt, n_rows))
            if with_sklearn:
                sks.append(sklearn_rate(nh, bs, n_rows)[0])
        lim, our = statistics.median(lims), statistics.median(ours)
        sk = statistics.median(sks) if sks else None
        ratio = statistics.median(o / li for o, li in zip(ours, lims))  # of each round's pair
        x_sk = statistics.median(o / s for o, s in zip(ours, sks)) if sks else None
        hand = statistics.median(h / li for h, li in zip(hands, lims)) if hands else None
        name = f"{algo.upper()}-{k} {N_VISIBLE}x{nh} batch {bs} {dt}"
        row = {"config": name, "limit": lim, "harmonium": our, "ratio": ratio, "sklearn": sk, "x_sklearn": x_sk,
               "handwritten_ratio": hand, "rounds": {"limit": lims, "harmonium": ours, "sklearn": sks,
                                                    "handwritten": hands}}
        results.append(row)
        print(f"{name:34s} {lim:9.0f} {our:9.0f} {ratio:6.2f} {(f'{hand:8.2f}' if hand else ' ' * 8)} "
              f"{(f'{sk:10.0f}' if sk else ' ' * 10)} {(f'{x_sk:9.2f}' if sk else '')}", flush=True)
    # the DBM's joint training step: 784-500-1000 (Salakhutdinov & Hinton's MNIST DBM), batch 100,
    # 100 particles, 10 mean-field sweeps, 5 Gibbs sweeps
    sizes, bs, n_part, mf, k = (N_VISIBLE, 500, 1000), 100, 100, 10, 5
    n_rows = (600 if args.quick else 2000) * (1 if on_cpu else 10)
    lims, ours = [], []
    for _ in range(rounds):
        lims.append(dbm_limit_rate(sizes, bs, n_part, mf, k, torch.float32, max(3, n_rows // bs)))
        ours.append(dbm_harmonium_rate(sizes, bs, n_part, mf, k, "float32", n_rows))
    lim, our = statistics.median(lims), statistics.median(ours)
    ratio = statistics.median(o / li for o, li in zip(ours, lims))
    name = f"DBM step 784-500-1000 batch {bs} (mf {mf}, k {k})"
    results.append({"config": name, "limit": lim, "harmonium": our, "ratio": ratio, "sklearn": None,
                    "rounds": {"limit": lims, "harmonium": ours}})
    print(f"{name:34s} {lim:9.0f} {our:9.0f} {ratio:6.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
