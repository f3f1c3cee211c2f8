"""Peak memory of training against what the model needs.

    python benchmarks/memory.py [--rows 60000] [--hidden 1024] [--batch 100]

In a fresh subprocess per configuration: the resident set size after importing harmonium and
creating the data (the baseline), and the peak resident set size during ``fit`` (CD-1 and
PCD-1 with 1,000 chains, float32, one epoch), with the kernel's peak (VmHWM) reset just before
``fit``.  The issue's budget: parameters + chains + one batch + 200 MB of interpreter and library
overhead, on top of the data itself; ``import torch`` alone takes about 220 MB resident here, so
the budget is checked on the growth during ``fit``.  Linux only (/proc/self/status, clear_refs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CODE = r"""
import json, os, sys
import numpy as np
import torch
import harmonium as hm

rows, hidden, batch, persistent = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
torch.set_num_threads(2)
X = torch.from_numpy((np.random.default_rng(0).random((rows, 784)) < 0.2).astype(np.float32))

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # kB
torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)  # torch.optim's first use imports torch._dynamo
import_peak = status("VmHWM")
with open("/proc/self/clear_refs", "w") as f:  # reset the peak: measure fit alone
    f.write("5")
baseline = status("VmRSS")  # interpreter + torch + harmonium + the data
kw = dict(persistent=True, n_chains=1000) if persistent else {}
est = hm.RBM(hidden, batch_size=batch, epochs=1, metrics=None, random_state=0, **kw)
est.fit(X)
peak = status("VmHWM")
n_par = sum(p.numel() for p in est.model_.parameters())
chains = sum(t.numel() for t in est.trainer_._chains().values())
need = 4 * (2 * n_par + chains + batch * (784 + hidden))  # parameters, velocity, chains, one batch
print(json.dumps({"data_mb": X.numel() * 4 / 2**20, "baseline_mb": baseline / 2**20, "peak_mb": peak / 2**20,
                  "startup_peak_mb": import_peak / 2**20, "model_state_mb": need / 2**20,
                  "growth_mb": (peak - baseline) / 2**20}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=60000)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    print(f"RBM 784x{args.hidden}, {args.rows} rows (float32), batch {args.batch}, one epoch; the peak during fit "
          "(VmHWM reset after the data were made)")
    print("(the baseline includes the ~70 MB that torch.optim's first use adds by importing torch._dynamo)")
    print(f"{'':8s} {'data MB':>8s} {'before fit':>11s} {'peak in fit':>12s} {'growth':>8s} {'params+chains+batch':>20s}")
    for persistent in (False, True):
        out = subprocess.run([sys.executable, "-c", CODE, str(args.rows), str(args.hidden), str(args.batch),
                              "1" if persistent else "0"], capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        name = "PCD-1" if persistent else "CD-1"
        print(f"{name:8s} {r['data_mb']:8.0f} {r['baseline_mb']:11.0f} {r['peak_mb']:12.0f} {r['growth_mb']:8.1f} "
              f"{r['model_state_mb']:20.1f}")
        lib = r["baseline_mb"] - r["data_mb"]
        print(f"  interpreter + torch + harmonium before fit: {lib:.0f} MB; growth during fit {r['growth_mb']:.1f} MB "
              f"against the model's {r['model_state_mb']:.1f} MB + 200 MB: "
              f"{'within' if r['growth_mb'] <= r['model_state_mb'] + 200 else 'OVER'}")


if __name__ == "__main__":
    main()
