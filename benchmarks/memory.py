"""Peak memory of training against what the model needs.

    python benchmarks/memory.py [--rows 60000] [--hidden 1024] [--batch 100]

In a fresh subprocess per configuration: the resident set size after importing harmonium and
creating the data (the baseline), and the peak resident set size during ``fit`` (CD-1 and
PCD-1 with 1,000 chains, float32, one epoch).  The issue's budget: parameters + chains + one
batch + 200 MB of interpreter and library overhead, on top of the data itself.  Linux only
(``ru_maxrss`` in kB and ``/proc/self/statm``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CODE = r"""
import json, os, resource, sys
import numpy as np
import torch
import harmonium as hm

rows, hidden, batch, persistent = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
torch.set_num_threads(2)
X = torch.from_numpy((np.random.default_rng(0).random((rows, 784)) < 0.2).astype(np.float32))
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
before_import_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
baseline = rss()  # interpreter + torch + harmonium + the data
kw = dict(persistent=True, n_chains=1000) if persistent else {}
est = hm.RBM(hidden, batch_size=batch, epochs=1, metrics=None, random_state=0, **kw)
est.fit(X)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
n_par = sum(p.numel() for p in est.model_.parameters())
chains = sum(t.numel() for t in est.trainer_._chains().values())
need = 4 * (2 * n_par + chains + batch * (784 + hidden))  # parameters, velocity, chains, one batch
print(json.dumps({"data_mb": X.numel() * 4 / 2**20, "baseline_mb": baseline / 2**20, "peak_mb": peak / 2**20,
                  "startup_peak_mb": before_import_peak / 2**20,
                  "model_state_mb": need / 2**20, "growth_mb": (peak - max(baseline, before_import_peak)) / 2**20}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=60000)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    print(f"RBM 784x{args.hidden}, {args.rows} rows (float32), batch {args.batch}, one epoch")
    print(f"{'':8s} {'data MB':>8s} {'baseline':>9s} {'peak':>8s} {'growth':>8s} {'params+chains+batch':>20s} "
          f"{'peak - data - baseline without data':>36s}")
    for persistent in (False, True):
        out = subprocess.run([sys.executable, "-c", CODE, str(args.rows), str(args.hidden), str(args.batch),
                              "1" if persistent else "0"], capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        name = "PCD-1" if persistent else "CD-1"
        overhead = r["peak_mb"] - r["data_mb"]
        print(f"{name:8s} {r['data_mb']:8.0f} {r['baseline_mb']:9.0f} {r['peak_mb']:8.0f} {r['growth_mb']:8.1f} "
              f"{r['model_state_mb']:20.1f} {overhead:36.0f}")
        print("  budget: params + chains + batch + 200 MB = "
              f"{r['model_state_mb'] + 200:.0f} MB; used beyond the data: {overhead:.0f} MB "
              f"({'within' if overhead <= r['model_state_mb'] + 200 else 'OVER'} budget)")
        print("  " + json.dumps(r))


if __name__ == "__main__":
    main()
