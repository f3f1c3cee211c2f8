#!/usr/bin/env bash
# The GPU checks, in one run on a machine with a CUDA device (and torch, scikit-learn, safetensors,
# matplotlib, tqdm, pytest, hypothesis installed; the package is used from this folder):
#
#     bash benchmarks/device_check.sh OUT_DIR [DATA_DIR] [DBM_CONFIG_JSON]
#
# 1. tests/test_devices.py: every public path on the device against the CPU, no host sync per batch,
#    the quick experiments on the device;
# 2. where the host synchronisations of a fit come from (a listing, for the record);
# 3. benchmarks/throughput.py, benchmarks/cuda_graph_probe.py and benchmarks/ais.py on the device;
# 4. with DATA_DIR (a folder holding mnist/), the dbm-mnist experiment on the device with
#    DBM_CONFIG_JSON replacing preset entries, stopped at the time left (its partial.json stays).
# Everything printed goes to OUT_DIR/device_check.log as well.
set -u
OUT_DIR=${1:?output folder}
DATA_DIR=${2:-}
DBM_CONFIG=${3:-'{}'}
mkdir -p "$OUT_DIR"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT_DIR/device_check.log") 2>&1
start=$(date +%s)
stage() { echo; echo "=== $* ($(( $(date +%s) - start )) s)"; }

stage "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
python3 -c "import torch, sklearn, safetensors, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'| sklearn', sklearn.__version__, '| numpy', numpy.__version__, '|', torch.cuda.get_device_name(), '|', torch.get_num_threads(), 'CPU threads')"

stage "tests/test_devices.py"
HARMONIUM_DATA=$DATA_DIR timeout 240 python3 -m pytest -q -p no:cacheprovider -rfEs tests/test_devices.py 2>&1 | tail -40

stage "host synchronisations of one fit (source lines)"
timeout 60 python3 - <<'EOF'
import collections, traceback, warnings
import numpy as np, torch
import harmonium as hm

X = (np.random.default_rng(0).random((1100, 784)) < 0.2).astype(np.float32)
for name, make in [("RBM CD-1", lambda: hm.RBM(64, epochs=1, batch_size=100, metrics=None, device="cuda")),
                   ("RBM PCD-1", lambda: hm.RBM(64, epochs=1, batch_size=100, persistent=True, metrics=None, device="cuda")),
                   ("DBM (default mf_tol)", lambda: hm.DBM((64, 32), epochs=1, batch_size=100, pretrain=False,
                                                          metrics=None, device="cuda"))]:
    est = make().fit(X[:200])
    est.set_params(warm_start=True, epochs=2)
    sites = collections.Counter()
    torch.cuda.synchronize()
    with warnings.catch_warnings():  # showwarning runs where each warning is raised: its stack is the site
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        def show(message, category, filename, lineno, file=None, line=None):
            frames = [f for f in traceback.extract_stack()[:-1] if "/harmonium/" in f.filename]
            sites[" <- ".join(f"{f.filename.split('/harmonium/')[-1]}:{f.lineno}" for f in frames[-3:][::-1])] += 1
        warnings.showwarning = show
        est.fit(X)
        torch.cuda.set_sync_debug_mode("default")
    print(f"{name}: {sum(sites.values())} synchronisations in one epoch of 11 batches")
    for site, n in sites.most_common(8):
        print(f"   {n:4d}  {site}")
EOF

stage "benchmarks/throughput.py --device cuda"
timeout 200 python3 benchmarks/throughput.py --device cuda --rounds 3 --json "$OUT_DIR/throughput-cuda.json"

stage "benchmarks/cuda_graph_probe.py"
timeout 90 python3 benchmarks/cuda_graph_probe.py

stage "benchmarks/ais.py --device cuda"
timeout 60 python3 benchmarks/ais.py --device cuda
timeout 60 python3 benchmarks/ais.py --device cuda --dtype float64

if [ -n "$DATA_DIR" ]; then
  left=$(( ${DEVICE_CHECK_SECONDS:-540} - ($(date +%s) - start) - 15 ))
  stage "dbm-mnist on the device, config $DBM_CONFIG, $left s left"
  if [ "$left" -gt 60 ]; then
    timeout "$left" python3 - "$DATA_DIR" "$DBM_CONFIG" <<'EOF'
import json, sys
from harmonium.experiments import run
res = run("dbm-mnist", "/tmp/dbm-mnist-device", data_dir=sys.argv[1], device="cuda", config=json.loads(sys.argv[2]))
r = res["results"]
print(json.dumps({k: r.get(k) for k in ("log_z_ais", "log_z_ais_check", "log_z_reverse_ais", "log_z_gap",
                                         "test_elbo", "train_elbo", "fine_tuned")}, indent=1))
print("times", json.dumps(res["times_s"]))
EOF
    for f in results.json partial.json samples.png dbm.safetensors; do
      [ -f "/tmp/dbm-mnist-device/$f" ] && cp "/tmp/dbm-mnist-device/$f" "$OUT_DIR/dbm-$f"
    done
  fi
fi
stage "done"
