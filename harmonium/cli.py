"""The ``harmonium`` command line.

Subcommands (``harmonium <command> --help`` for each)::

    harmonium init MODEL --visible N --hidden M [--learning-rate LR] ...   untrained model file
    harmonium train [MODEL] [DATA] --epochs N                             train a model file
    harmonium train [--dataset digits] [--out DIR]                        the embedded demo
    harmonium run-visible MODEL [DATA] [--mean]                           hidden states given visible rows
    harmonium run-hidden MODEL [DATA] [--mean]                            visible states given hidden rows
    harmonium daydream MODEL STEPS [N] [--trace]                          free-running chains
    harmonium sample MODEL N [--steps S] [--mean]                         samples after S Gibbs sweeps
    harmonium transform MODEL [DATA]                                      hidden probabilities
    harmonium reconstruct MODEL [DATA]                                    one deterministic up-down pass
    harmonium info MODEL [--json]                                         what a model file holds

It reproduces the session of the small ``rbmcmd`` tool::

    harmonium init rbm.safetensors --visible 6 --hidden 2 --learning-rate 0.1
    harmonium train rbm.safetensors --epochs 5000 < rows.txt
    echo "0 0 0 1 1 0" | harmonium run-visible rbm.safetensors
    echo "1 0" | harmonium run-hidden rbm.safetensors
    harmonium daydream --trace rbm.safetensors 3
    harmonium daydream rbm.safetensors 3 5

Data (DATA, or standard input when DATA is omitted or "-") is a ``.npy`` file, a ``.npz`` file (its
first array, or ``--key``), a ``.csv`` file, or text with one row per line and values separated by
whitespace or commas (blank lines and lines starting with ``#`` are skipped).  Outputs are one row
per line: states as integers when they are whole numbers, probabilities and other reals with
``%.6g``.

Sampling commands draw fresh randomness on every call unless ``--seed`` is given.  ``train`` on a
model file continues the random stream saved in the file (so interrupted and resumed training is
reproducible) unless ``--seed`` is given.

User mistakes (missing or corrupt files, malformed data, values outside the units' support, bad
options) print ``harmonium: error: ...`` on stderr and exit with status 2; unexpected internal
errors exit with status 1 (set ``HARMONIUM_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

import argparse
import io as _stdio
import json
import math
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["main", "build_parser", "read_data", "format_rows", "UserError"]

PROG = "harmonium"
UNIT_CHOICES_VISIBLE = ("bernoulli", "gaussian", "softmax")
UNIT_CHOICES_HIDDEN = ("bernoulli", "multinomial")
DEMO_OUT = "out/demo"
DEMO_DEFAULTS = {"hidden": 64, "learning_rate": 0.05, "momentum": 0.5, "batch_size": 10, "epochs": 30, "k": 1}
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


EPILOG = """\
the session of the small rbmcmd tool:
  harmonium init rbm.safetensors --visible 6 --hidden 2 --learning-rate 0.1
  harmonium train rbm.safetensors --epochs 5000 < rows.txt
  echo "0 0 0 1 1 0" | harmonium run-visible rbm.safetensors
  echo "1 0" | harmonium run-hidden rbm.safetensors
  harmonium daydream --trace rbm.safetensors 3
  harmonium daydream rbm.safetensors 3 5

the demo (8x8 digits; pictures and metrics in out/demo):
  harmonium train

DATA: .npy, .npz (--key), .csv, or rows of numbers separated by whitespace or commas; stdin when
omitted or "-".  Errors in files or data exit with status 2, internal errors with 1
(HARMONIUM_DEBUG=1 shows the traceback)."""


class UserError(Exception):
    """A mistake in the command line, the input files or the data: reported without a traceback."""


# ============================================================================ data input
@dataclass
class Data:
    """Rows read from a file or stdin, with where each row came from (for error messages)."""

    values: np.ndarray  # (n_rows, n_values), float64
    name: str  # "stdin", "data.txt", "data.npz[key]"
    lines: list[int] | None = None  # 1-based line number of each row, for text sources

    def where(self, i: int) -> str:
        if self.lines is not None:
            return f"line {self.lines[i]} of {self.name}"
        return f"row {i + 1} of {self.name}"


def parse_text(text: str, name: str, *, csv: bool = False) -> Data:
    """Parse rows of numbers separated by whitespace or commas, one row per line.

    Blank lines and lines starting with ``#`` are skipped.  In a ``.csv`` file a first line with no
    number at all is taken as a header.  A non-number or a row of the wrong length raises
    ``UserError`` naming the line (and column).
    """
    rows: list[list[float]] = []
    lines: list[int] = []
    width: int | None = None
    header_checked = not csv
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "," in line or csv:
            tokens = [t.strip() for t in line.split(",")]
        else:
            tokens = line.split()
        if not header_checked:
            header_checked = True
            if all(not _is_number(t) for t in tokens if t):
                continue  # a header line
        row: list[float] = []
        for col, tok in enumerate(tokens, start=1):
            if tok == "":
                raise UserError(f"{name}: line {lineno}, column {col}: empty value")
            try:
                row.append(float(tok))
            except ValueError:
                shown = tok if len(tok) <= 40 else tok[:37] + "..."
                raise UserError(f"{name}: line {lineno}, column {col}: {shown!r} is not a number") from None
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise UserError(f"{name}: line {lineno}: expected {width} values, got {len(row)} "
                            f"(the first row, line {lines[0]}, has {width})")
        rows.append(row)
        lines.append(lineno)
    if not rows:
        raise UserError(f"{name}: no data rows (expected one row of numbers per line)")
    return Data(np.asarray(rows, dtype=np.float64), name, lines)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _array_data(arr: Any, name: str) -> Data:
    arr = np.asarray(arr)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise UserError(f"{name}: expected an array of numbers, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise UserError(f"{name}: expected real numbers, got complex dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = ""
        if arr.ndim == 1:
            hint = " (a single row? save it as shape (1, n))"
        elif arr.ndim > 2:
            hint = f" (flatten each sample: reshape to ({arr.shape[0]}, {int(np.prod(arr.shape[1:]))}))"
        raise UserError(f"{name}: expected a 2-D array (rows x values), got shape {arr.shape}{hint}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UserError(f"{name}: empty array of shape {arr.shape}")
    return Data(arr.astype(np.float64), name)


def _load_npy(src: Any, name: str) -> Data:
    try:
        arr = np.load(src, allow_pickle=False)
    except ValueError as e:
        raise UserError(f"{name}: not a readable .npy file: {e}") from None
    except EOFError:
        raise UserError(f"{name}: not a readable .npy file: truncated") from None
    return _array_data(arr, name)


def _load_npz(src: Any, name: str, key: str | None) -> Data:
    import zipfile

    try:
        with np.load(src, allow_pickle=False) as z:
            names = list(z.files)
            if not names:
                raise UserError(f"{name}: the .npz archive holds no arrays")
            if key is None:
                key = names[0]
            elif key not in names:
                raise UserError(f"{name}: no array named {key!r}; the archive holds {names}")
            arr = z[key]
    except (zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"{name}: not a readable .npz file: {e}") from None
    except ValueError as e:
        raise UserError(f"{name}: not a readable .npz file: {e}") from None
    return _array_data(arr, f"{name}[{key}]")


def read_data(source: str | None, *, key: str | None = None, stdin: Any = None) -> Data:
    """Read rows from a file (by suffix: .npy, .npz, .csv, else text) or from stdin (None or "-")."""
    if source is None or source == "-":
        return _read_stdin(key, stdin if stdin is not None else sys.stdin)
    path = Path(source)
    if not path.exists():
        raise UserError(f"no data file at {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a data file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_npy(path, str(path))
    if suffix == ".npz":
        return _load_npz(path, str(path), key)
    raw = path.read_bytes()
    if raw.startswith(NPY_MAGIC):
        return _load_npy(_stdio.BytesIO(raw), str(path))
    if raw.startswith(ZIP_MAGIC):
        return _load_npz(_stdio.BytesIO(raw), str(path), key)
    return parse_text(_decode(raw, str(path)), str(path), csv=suffix == ".csv")


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{name}: not a text file of numbers (byte {e.start} is not UTF-8 text); "
                        f"use .npy, .npz, .csv or whitespace-separated text") from None


def _read_stdin(key: str | None, stream: Any) -> Data:
    if stream is None:
        raise UserError("no data: give a DATA file or pipe rows into stdin")
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):
        interactive = False
    if interactive:
        print(f"{PROG}: reading rows from stdin (one per line; end with Ctrl-D)", file=sys.stderr)
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        raw = buffer.read()
        if raw.startswith(NPY_MAGIC):
            return _load_npy(_stdio.BytesIO(raw), "stdin")
        if raw.startswith(ZIP_MAGIC):
            return _load_npz(_stdio.BytesIO(raw), "stdin", key)
        text = _decode(raw, "stdin")
    else:
        text = stream.read()
    return parse_text(text, "stdin")


def check_rows(data: Data, units: Any, layer: str) -> np.ndarray:
    """Check the number of columns and the values of ``data`` against a layer of units; name the
    first offending row in the error."""
    import torch

    n = units.n
    d = data.values.shape[1]
    if d != n:
        raise UserError(f"{data.name} has {d} value{'s' if d != 1 else ''} per row, but the model has "
                        f"{n} {layer} unit{'s' if n != 1 else ''}")
    t = torch.as_tensor(data.values)
    try:
        units.validate(t, data.name)
    except ValueError as whole:
        lo, hi = 0, t.shape[0]  # bisect for the first row that fails on its own
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                units.validate(t[lo:mid], "")
            except ValueError:
                hi = mid
            else:
                lo = mid
        try:
            units.validate(t[lo:lo + 1], data.where(lo))
        except ValueError as e:
            raise UserError(str(e)) from None
        raise UserError(str(whole)) from None
    return data.values


# ============================================================================ output
def format_rows(a: Any, *, probabilities: bool = False) -> str:
    """One line per row: whole numbers as integers ("1 0"), anything else (or everything, with
    ``probabilities=True``) with ``%.6g``."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    a = a + 0.0  # no "-0"
    if not probabilities and a.size and np.isfinite(a).all() and (a == np.rint(a)).all():
        return "".join(" ".join(map(str, row)) + "\n" for row in a.astype(np.int64).tolist())
    return "".join(" ".join("%.6g" % x for x in row) + "\n" for row in a.tolist())


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# ============================================================================ models
def _check_device(device: str | None) -> None:
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"invalid --device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: MPS is not available on this machine")


def load_model(path: str, device: str | None = None):
    from . import io as hio
    from .base import BoltzmannEstimator

    _check_device(device)
    from .deep import DBN

    model = hio.load(path, device=device)
    if not isinstance(model, BoltzmannEstimator) or isinstance(model, DBN):
        raise UserError(f"{path} holds a {type(model).__name__}; this command needs an RBM or a DBM"
                        + (" (load a DBN in Python: harmonium.load)" if isinstance(model, DBN) else ""))
    return model


def reseed(model, seed: int | None) -> None:
    """Rebuild the estimator's random generator from ``seed`` (fresh entropy for None)."""
    model.set_params(random_state=seed)
    model.__dict__.pop("_rng", None)
    trainer = getattr(model, "trainer_", None)
    if trainer is not None:
        trainer.generator = model._generator()


def epochs_trained(model) -> int:
    return model.epochs_trained_


def _units_name(units: Any) -> str:
    from .units import units_config

    cfg = units_config(units)
    extra = ", ".join(f"{k}={v}" for k, v in cfg.items() if k not in ("name", "n"))
    return cfg["name"] + (f" ({extra})" if extra else "")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.ndarray,)) or hasattr(value, "detach"):
        shape = tuple(value.shape)
        return f"array of shape {shape}"
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, type):
        return value.__name__
    return repr(value)


def last_metrics(history: dict[str, list]) -> dict[str, dict[str, Any]]:
    """{metric: {"epoch": e, "value": v}} for the last recorded (non-None) value of each metric."""
    epochs = history.get("epoch", [])
    out: dict[str, dict[str, Any]] = {}
    for key, seq in history.items():
        if key == "epoch":
            continue
        for i in range(len(seq) - 1, -1, -1):
            v = seq[i]
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                out[key] = {"epoch": epochs[i] if i < len(epochs) else None, "value": _jsonable(v)}
                break
    return out


def describe(model, path: str | None = None) -> dict[str, Any]:
    m = model.model_
    params = {k: _jsonable(v) for k, v in sorted(model.get_params(deep=False).items())}
    layers = [m.visible, m.hidden] if hasattr(m, "visible") else list(m.layers)
    info = {"path": path, "class": type(model).__name__}
    if len(layers) == 2 and hasattr(m, "visible"):
        info["visible"] = {"n": int(m.n_visible), "units": _jsonable(_units_dict(m.visible))}
        info["hidden"] = {"n": int(m.n_hidden), "units": _jsonable(_units_dict(m.hidden))}
    else:
        info["layers"] = [{"n": int(u.n), "units": _jsonable(_units_dict(u))} for u in layers]
    info.update({
        "n_parameters": int(sum(p.numel() for p in m.parameters())),
        "epochs_trained": epochs_trained(model),
        "hyperparameters": params,
        "last_metrics": last_metrics(model.history_),
    })
    return info


def _units_dict(units: Any) -> dict[str, Any]:
    from .units import units_config

    return units_config(units)


def _metrics_lines(history: dict[str, list], indent: str = "  ") -> list[str]:
    lm = last_metrics(history)
    return [f"{indent}{k}: {v['value']:.6g} (epoch {v['epoch']})" if isinstance(v["value"], float)
            else f"{indent}{k}: {v['value']} (epoch {v['epoch']})" for k, v in lm.items()]


# ============================================================================ commands
def cmd_init(args: argparse.Namespace) -> int:
    from .estimators import RBM

    path = Path(args.model)
    if path.exists() and not args.force:
        raise UserError(f"{path} exists; pass --force to overwrite it")
    if path.is_dir():
        raise UserError(f"{path} is a directory")
    _check_device(args.device)
    if args.weight_std < 0 or not math.isfinite(args.weight_std):
        raise UserError(f"--weight-std must be a non-negative number, got {args.weight_std}")
    rng = np.random.default_rng(args.seed)
    W = rng.normal(0.0, args.weight_std, size=(args.visible, args.hidden))
    visible: Any = args.visible_units
    if args.group_size is not None:
        if visible != "softmax":
            raise UserError("--group-size applies to --visible-units softmax only")
        if args.visible % args.group_size:
            raise UserError(f"--group-size {args.group_size} does not divide --visible {args.visible}")
        visible = {"name": "softmax", "group_size": args.group_size}
    params = dict(learning_rate=args.learning_rate, momentum=args.momentum, batch_size=args.batch_size,
                  k=args.k, persistent=args.persistent, l2=args.l2, centering=args.centering,
                  ema_decay=args.ema_decay, random_state=args.seed)
    model = RBM.from_arrays(W, np.zeros(args.visible), np.zeros(args.hidden), visible=visible,
                            hidden=args.hidden_units, dtype=args.dtype, device=args.device or "cpu", **params)
    model.save(path)
    print(f"created {path}: untrained {type(model).__name__}, {args.visible} {_units_name(model.model_.visible)} "
          f"visible x {args.hidden} {_units_name(model.model_.hidden)} hidden units")
    return 0


def _verbosity(quiet: bool) -> int:
    """0 with --quiet; otherwise a line per recorded epoch, plus a progress bar on a terminal."""
    if quiet:
        return 0
    try:
        return 2 if sys.stderr.isatty() else 1
    except (AttributeError, ValueError):
        return 1


def _auto_metrics_every(n_epochs: int) -> int:
    return max(1, n_epochs // 20)


def _training_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("learning_rate", "momentum", "batch_size", "k", "l2", "ema_decay"):
        v = getattr(args, name)
        if v is not None:
            out[name] = v
    return out


def cmd_train(args: argparse.Namespace) -> int:
    if args.model is None:
        if args.data is not None:  # pragma: no cover - argparse fills model first
            raise UserError("give MODEL before DATA")
        return _train_demo(args)
    if args.out is not None:
        raise UserError("--out applies to the demo only; a model file is trained in place")
    if args.hidden is not None:
        raise UserError("--hidden applies to the demo only; the model file fixes the number of hidden units")
    if args.epochs is None:
        raise UserError("--epochs is required when training a model file")
    if args.dataset is not None and args.data is not None:
        raise UserError("give either DATA or --dataset, not both")
    if args.validation and args.dataset is not None:
        raise UserError("--validation cannot be combined with --dataset (it has its own validation split)")
    if args.validation == "-" and args.data in (None, "-"):
        raise UserError("stdin can hold the training rows or the validation rows, not both")
    model = load_model(args.model, args.device)
    if args.dataset is not None:
        X, Xv, _ = load_dataset(args.dataset)
        train = Data(X, f"dataset {args.dataset}")
        val = Data(Xv, f"dataset {args.dataset} (validation)")
    else:
        train = read_data(args.data, key=args.key)
        val = read_data(args.validation, key=args.key) if args.validation else None
    units = _visible(model)
    X = check_rows(train, units, "visible")
    X_val = check_rows(val, units, "visible") if val is not None else None
    before = epochs_trained(model)
    params = dict(warm_start=True, epochs=before + args.epochs, verbose=_verbosity(args.quiet),
                  **_training_overrides(args))
    params["metrics_every"] = args.metrics_every or _auto_metrics_every(args.epochs)
    model.set_params(**params)
    if args.seed is not None:
        reseed(model, args.seed)
    run_params = {"log_dir": model.log_dir, "checkpoint_path": model.checkpoint_path}
    if args.logdir is not None:
        model.set_params(log_dir=args.logdir)
    if args.checkpoint is not None:
        model.set_params(checkpoint_path=args.checkpoint, checkpoint_every=args.checkpoint_every)
    model.fit(X, X_val=X_val)
    model.set_params(**run_params)  # the log folder and checkpoint are this run's, not the model's
    if not _main_rank():  # under torchrun, rank 0 writes the model and reports
        return 0
    model.save(args.model)
    lines = [f"trained {args.model}: epochs {before} -> {epochs_trained(model)} on {X.shape[0]} rows"
             + (f" ({X_val.shape[0]} validation)" if X_val is not None else "")]
    metrics = _metrics_lines(model.history_)
    if metrics:
        lines += ["last metrics:"] + metrics
    print("\n".join(lines))
    return 0


def _digits() -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    from sklearn.datasets import load_digits

    X = load_digits().data / 16.0
    X = (X > 0.5).astype(np.float64)
    perm = np.random.default_rng(0).permutation(len(X))
    X = X[perm]
    return X[:1500], X[1500:], (8, 8)


DATASETS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray, tuple[int, int]]]] = {"digits": _digits}


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(train, validation, image shape) of an embedded dataset."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]()


def _train_demo(args: argparse.Namespace) -> int:
    from . import viz
    from .estimators import BernoulliRBM
    from .io import atomic_write_bytes

    if args.validation is not None or args.key is not None:
        raise UserError("--validation and --key apply to training a model file, not the demo")
    name = args.dataset or "digits"
    X, X_val, shape = load_dataset(name)
    _check_device(args.device)
    d = dict(DEMO_DEFAULTS)
    epochs = d["epochs"] if args.epochs is None else args.epochs
    params = dict(n_hidden=args.hidden or d["hidden"], learning_rate=d["learning_rate"], momentum=d["momentum"],
                  batch_size=d["batch_size"], k=d["k"], persistent=False)
    params.update(_training_overrides(args))
    seed = 0 if args.seed is None else args.seed
    model = BernoulliRBM(epochs=epochs, random_state=seed, verbose=_verbosity(args.quiet), log_dir=args.logdir,
                         checkpoint_path=args.checkpoint, checkpoint_every=args.checkpoint_every,
                         metrics_every=args.metrics_every or _auto_metrics_every(epochs),
                         device=args.device or "cpu", **params)
    out = Path(args.out or DEMO_OUT)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    main = _main_rank()  # under torchrun every rank trains and runs AIS, rank 0 writes and reports
    if not args.quiet and main:
        print(f"{name} demo: {type(model).__name__} {X.shape[1]} visible x {model.n_hidden} hidden, "
              f"{epochs} epochs on {X.shape[0]} rows ({X_val.shape[0]} validation) -> {out}/", flush=True)
    model.fit(X, X_val=X_val)
    # honest evaluation: AIS estimate of log Z (standard 14,500-beta schedule, base-rate start)
    from . import estimate
    ais = estimate.ais(model, n_runs=100, base_rate=X, random_state=seed)
    if not main:
        return 0
    out.mkdir(parents=True, exist_ok=True)
    model.set_params(log_dir=None, checkpoint_path=None)  # this run's, not the model's
    written = [model.save(out / "model.safetensors")]
    viz.plot_filters(model.components_, shape=shape, path=out / "filters.png", title="filters")
    written.append(out / "filters.png")
    samples = model.sample(100, n_steps=1000)
    viz.plot_samples(samples, shape=shape, path=out / "samples.png", title="samples (1000 Gibbs sweeps)")
    written.append(out / "samples.png")
    # a GIF of 16 chains over 60 Gibbs sweeps from random starts (visible means at each sweep)
    frames = [model.daydream(0, n_dreams=16)]
    for _ in range(60):
        frames.append(model.gibbs(frames[-1], 1))
    written.append(viz.animate_chain(np.stack(frames), shape=shape, path=out / "chain.gif", fps=10))
    n = min(10, X_val.shape[0])
    viz.plot_reconstructions(X_val[:n], model.reconstruct(X_val[:n]), shape=shape, n=n,
                             path=out / "reconstructions.png", title="validation reconstructions")
    written.append(out / "reconstructions.png")
    if any(k != "epoch" for k in model.history_):
        viz.plot_curves(model.history_, path=out / "curves.png")
        written.append(out / "curves.png")
    atomic_write_bytes(out / "metrics.json",
                       (json.dumps(_jsonable(model.history_), indent=1, allow_nan=False) + "\n").encode())
    written.append(out / "metrics.json")
    evaluation = {"ais_log_z": ais.log_z, "ais_log_z_interval": list(ais.log_z_interval),
                  "ais_runs": 100, "ais_betas": ais.n_betas, "ais_ess": ais.ess,
                  "train_log_likelihood": float(estimate.log_likelihood(model, X, ais).mean()),
                  "val_log_likelihood": float(estimate.log_likelihood(model, X_val, ais).mean())}
    atomic_write_bytes(out / "evaluation.json", (json.dumps(evaluation, indent=1) + "\n").encode())
    written.append(out / "evaluation.json")
    lines = [f"{name} demo: trained {epochs_trained(model)} epochs"]
    metrics = _metrics_lines(model.history_)
    if metrics:
        lines += ["last metrics:"] + metrics
    lo, hi = ais.log_z_interval
    lines += [f"AIS log Z = {ais.log_z:.3f} (3-sigma interval {lo:.3f} .. {hi:.3f}, {ais.n_betas} betas, "
              f"100 runs, ESS {ais.ess:.0f})",
              f"average log-likelihood: train {evaluation['train_log_likelihood']:.3f}, "
              f"validation {evaluation['val_log_likelihood']:.3f} nats"]
    lines += ["wrote:"] + [f"  {p}" for p in written]
    print("\n".join(lines))
    return 0


def _main_rank() -> bool:
    """False on the ranks other than 0 of a torch.distributed run (torchrun), which write nothing."""
    from . import distributed
    group = distributed.current()
    return group is None or group.is_main


def _visible(model):
    """The visible layer's unit type of an RBM or DBM estimator."""
    m = model.model_
    return m.visible if hasattr(m, "visible") else m.layers[0]


def _require_rbm(model, command: str) -> None:
    if not hasattr(model.model_, "visible"):
        raise UserError(f"{command} works on RBM model files; this one holds a {type(model).__name__}")


def _inference_model(args: argparse.Namespace):
    model = load_model(args.model, args.device)
    reseed(model, getattr(args, "seed", None))
    return model


def cmd_run_visible(args: argparse.Namespace) -> int:
    model = _inference_model(args)
    _require_rbm(model, "run-visible")
    X = check_rows(read_data(args.data, key=args.key), _visible(model), "visible")
    out = model.transform(X) if args.mean else model.run_visible(X)
    _write(format_rows(out, probabilities=args.mean))
    return 0


def cmd_run_hidden(args: argparse.Namespace) -> int:
    import torch

    model = _inference_model(args)
    _require_rbm(model, "run-hidden")
    m = model.model_
    H = check_rows(read_data(args.data, key=args.key), m.hidden, "hidden")
    if args.mean:
        with torch.no_grad():
            h = torch.as_tensor(H, dtype=m.W.dtype, device=m.W.device)
            out = m.visible_mean(h).cpu().numpy()
    else:
        out = model.run_hidden(H)
    _write(format_rows(out, probabilities=args.mean))
    return 0


def cmd_daydream(args: argparse.Namespace) -> int:
    if args.trace and args.n_dreams is not None and args.n_dreams != 1:
        raise UserError("--trace shows every step of one dream; drop N or use N=1")
    model = _inference_model(args)
    _require_rbm(model, "daydream")
    out = model.daydream(args.steps, args.n_dreams or 1, trace=args.trace)
    if args.trace:
        _write(format_rows(out[:1], probabilities=True) + (format_rows(out[1:]) if len(out) > 1 else ""))
    else:
        _write(format_rows(out, probabilities=args.steps == 0))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    model = _inference_model(args)
    out = model.sample(args.n, n_steps=args.steps, mean=args.mean)
    _write(format_rows(out, probabilities=args.mean))
    return 0


def cmd_transform(args: argparse.Namespace) -> int:
    model = _inference_model(args)
    X = check_rows(read_data(args.data, key=args.key), _visible(model), "visible")
    _write(format_rows(model.transform(X), probabilities=True))
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    model = _inference_model(args)
    X = check_rows(read_data(args.data, key=args.key), _visible(model), "visible")
    _write(format_rows(model.reconstruct(X), probabilities=True))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    model = load_model(args.model, args.device)
    info = describe(model, args.model)
    if args.json:
        _write(json.dumps(info, indent=2, allow_nan=False) + "\n")
        return 0
    lines = [
        f"model: {args.model}",
        f"class: {info['class']}",
        *([f"visible: {info['visible']['n']} {_units_name(model.model_.visible)} units",
           f"hidden: {info['hidden']['n']} {_units_name(model.model_.hidden)} units"] if "visible" in info else
          ["layers: " + " - ".join(f"{u.n} {_units_name(u)}" for u in model.model_.layers)]),
        f"parameters: {info['n_parameters']}",
        f"epochs trained: {info['epochs_trained']}",
        "hyperparameters:",
    ]
    lines += [f"  {k}: {v}" for k, v in info["hyperparameters"].items()]
    metrics = _metrics_lines(model.history_)
    lines += (["last metrics:"] + metrics) if metrics else ["last metrics: none recorded"]
    _write("\n".join(lines) + "\n")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """log Z by AIS (with its 3-sigma interval) and reverse AIS, and the average log-likelihood (RBM)
    or variational lower bound (DBM) of DATA."""
    import torch

    from . import estimate
    from .deep import DBM

    model = load_model(args.model, args.device)
    X = check_rows(read_data(args.data, key=args.key), _visible(model), "visible")
    seed = 0 if args.seed is None else args.seed
    fwd = estimate.ais(model, n_runs=args.runs, betas=args.betas, base_rate=X, random_state=seed,
                       verbose=not args.quiet and sys.stderr.isatty())
    reseed(model, seed + 1)
    if isinstance(model, DBM):
        chains = getattr(getattr(model, "trainer_", None), "particles", None)
        if chains is None:
            g = model._generator()
            m = model.model_
            x = [u.sample(m.W[0].new_zeros(args.runs, u.n), 1.0, g) for u in m.layers]
            chains, _ = m.gibbs(x, args.burn_in, generator=g)
        samples = [c[: args.runs] for c in chains]
    else:
        samples = torch.as_tensor(model.sample(args.runs, n_steps=args.burn_in))
    rev = estimate.reverse_ais(model, samples, betas=args.betas, base_rate=X, random_state=seed + 2)
    out = {"n_rows": int(X.shape[0]), "ais_runs": args.runs, "betas": fwd.n_betas,
           "log_z": fwd.log_z, "log_z_interval": list(fwd.log_z_interval), "ess": fwd.ess,
           "reverse_log_z": rev.log_z, "reverse_log_z_interval": list(rev.log_z_interval)}
    if isinstance(model, DBM):
        out["elbo"] = float(estimate.elbo(model, X, fwd).mean())
        out["elbo_reverse"] = float(estimate.elbo(model, X, rev).mean())
        what = "average ELBO"
        key, key_rev = "elbo", "elbo_reverse"
    else:
        out["log_likelihood"] = float(estimate.log_likelihood(model, X, fwd).mean())
        out["log_likelihood_reverse"] = float(estimate.log_likelihood(model, X, rev).mean())
        what = "average log-likelihood"
        key, key_rev = "log_likelihood", "log_likelihood_reverse"
    if args.json:
        _write(json.dumps(out, indent=2) + "\n")
        return 0
    lo, hi = fwd.log_z_interval
    rlo, rhi = rev.log_z_interval
    gap = rev.log_z - fwd.log_z
    _write("\n".join([
        f"{args.model} on {X.shape[0]} rows",
        f"AIS ({args.runs} runs, {fwd.n_betas} betas): log Z = {fwd.log_z:.4f}  (log(Z -+ 3 sigma): {lo:.4f}, {hi:.4f}),"
        f" ESS {fwd.ess:.1f}",
        f"reverse AIS from {args.runs} model samples: log Z = {rev.log_z:.4f}  ({rlo:.4f}, {rhi:.4f})",
        f"{what}: {out[key]:.4f} nats (AIS), {out[key_rev]:.4f} nats (reverse AIS, conservative)",
        f"gap between the two log Z estimates: {gap:.4f} nats"
        + ("  (large: the estimates are not trustworthy; use more betas or runs)" if abs(gap) > max(1.0, hi - lo)
           else ""),
    ]) + "\n")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    """The best-predicted unrated movies for a user of a RatingsRBM model file, with titles."""
    from . import io as hio
    from .collaborative import RatingsRBM

    _check_device(args.device)
    model = hio.load(args.model, device=args.device)
    if not isinstance(model, RatingsRBM):
        raise UserError(f"{args.model} holds a {type(model).__name__}; recommend needs a RatingsRBM")
    titles: dict[int, str] = {}
    try:
        from .datasets import movielens_titles
        titles = movielens_titles(args.variant, data_dir=args.data_dir, download=False)
    except (OSError, ValueError):
        pass  # no titles available: print the item ids alone
    rows = model.recommend(args.user, n=args.n, exclude_rated=not args.include_rated)
    what = "p(like)" if model.binary else "predicted rating"
    lines = [f"{rank:3d}. {item:6d}  {score:.3f}  {titles.get(item, '')}".rstrip()
             for rank, (item, score) in enumerate(rows, 1)]
    _write(f"top {len(rows)} for user {args.user} ({what}):\n" + "\n".join(lines) + "\n")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run a published-experiment reproduction (harmonium.experiments) and print its numbers."""
    from .experiments import EXPERIMENTS, run
    from .experiments._common import ConfigError

    if args.name not in EXPERIMENTS:
        raise UserError(f"unknown experiment {args.name!r}; known experiments: {', '.join(sorted(EXPERIMENTS))}")
    out = args.out or os.path.join("out", "experiments", args.name + ("-quick" if args.quick else ""))
    _check_device(args.device)
    try:
        config = json.loads(args.config) if args.config else None
    except json.JSONDecodeError as e:
        raise UserError(f"--config is not valid JSON: {e}") from None
    if config is not None and not isinstance(config, dict):
        raise UserError("--config must be a JSON object, e.g. '{\"epochs\": 200}'")
    try:
        res = run(args.name, out, quick=args.quick, data_dir=args.data_dir, seed=args.seed,
                  device=args.device or "cpu", config=config)
    except ConfigError as e:
        raise UserError(str(e)) from None
    r = res.get("results", {})
    lines = [f"{args.name}{' (quick)' if args.quick else ''}, seed {args.seed}: "
             f"{res['wall_time_s']:.1f} s, {res['torch_threads']} torch threads, device {res['device']}"]
    if args.name == "rbm-mnist":
        c, sel = res["config"], r.get("rbm_selection")
        if sel:  # ties go to the earlier epoch, so the RBM kept can be younger than the last one trained
            val = sel["val_error_by_epoch"][str(sel["epochs"])]  # results.json's keys are strings
            lines.append(f"  RBM 784-{c['n_hidden']}, {c['epochs']} epochs; kept: epoch {sel['epochs']} "
                         f"(validation error of its logistic regression {val:.2f} %)")
        for key, label in (("logistic_regression", "RBM features + logistic regression"),
                           ("linear_svm", "RBM features + linear SVM"), ("knn", "RBM features + k-NN")):
            if key in r:
                lines.append(f"  {label:<38s} test error {r[key]['test_error']:6.2f} %")
        if "fine_tuned" in r:
            lines.append(f"  {'fine-tuned RBM':<38s} test error {r['fine_tuned']['test_error']:6.2f} %")
        lines += _few_label_lines(r)
    elif args.name == "movielens":
        summary = r["summary"]
        lines.append(f"  {'model':<14s} {'RMSE mean +- std':>20s}   (MovieLens 100K, folds {len(r['folds'])})")
        for name, stats in summary.items():
            if "rmse" in stats:
                lines.append(f"  {name:<14s} {stats['rmse']['mean']:12.4f} +- {stats['rmse']['std']:.4f}")
        for name, stats in summary.items():
            if "binary_mae" in stats:
                lines.append(f"  {name:<14s} binary MAE {stats['binary_mae']['mean']:.4f}")
    elif args.name == "dbm-mnist":
        c = res["config"]
        joint = c["epochs"] + (c.get("decay_epochs") or 0)  # the decaying epochs follow the constant ones
        lines.append(f"  DBM 784-{'-'.join(str(n) for n in c['n_hidden'])}, {joint} joint epochs")
        lines += [f"  data: {c['data']}"] if "data" in c else []
        lo, hi = r["log_z_ais_interval"]
        check = f"; AIS with {r['betas_check']} betas {r['log_z_ais_check']:.3f}" if "betas_check" in r else ""
        lines.append(f"  log Z: AIS {r['log_z_ais']:.3f} ({lo:.3f}, {hi:.3f}), {c['betas']} betas, "
                     f"reverse AIS {r['log_z_reverse_ais']:.3f}{check}")
        lines.append(f"  average test ELBO {r['test_elbo']:.2f} nats ({r['elbo_rows']} rows)")
        if "fine_tuned" in r:
            lines.append(f"  fine-tuned DBM test error {r['fine_tuned']['test_error']:.2f} %")
        lines += _few_label_lines(r)
    elif args.name == "grbm-patches":
        lines.append(f"  Gaussian-Bernoulli RBM, {res['config']['n_hidden']} hidden, {res['config']['dims']} whitened "
                     f"dimensions, {res['config']['n_train']} training / {res['config']['n_test']} test patches")
        lo, hi = r["log_z_ais_interval"]
        lines.append(f"  log Z: AIS {r['log_z_ais']:.3f} ({lo:.3f}, {hi:.3f}), reverse AIS {r['log_z_reverse_ais']:.3f}"
                     + (f", exact {r['log_z_exact']:.3f}" if r.get("log_z_exact") is not None else ""))
        lines.append(f"  test log-likelihood per patch (whitened): RBM {r['test_log_likelihood_whitened']:.2f}, "
                     f"Gaussian {r['gaussian_test_log_likelihood_whitened']:.2f} nats "
                     f"(RBM - Gaussian {r['rbm_minus_gaussian_test']:+.2f})")
    elif args.name == "rbm-mnist-likelihood":
        lines.append(f"  {res['config']['n_hidden']} hidden, {res['config']['epochs']} epochs, "
                     f"{res['config']['betas']} betas")
        lines += [f"  data: {res['config']['data']}"] if "data" in res["config"] else []
        for v in r["variants"].values():
            lo, hi = v["log_z_ais_interval"]
            lines.append(f"  {v['algorithm']}: log Z AIS {v['log_z_ais']:.3f} ({lo:.3f}, {hi:.3f}), reverse AIS "
                         f"{v['log_z_reverse_ais']:.3f}; test log-likelihood {v['test_log_likelihood_ais']:.2f} nats "
                         f"(AIS), {v['test_log_likelihood_reverse_ais']:.2f} (reverse AIS)")
    else:  # any other experiment: its scalar results
        lines += [f"  {k}: {v:.6g}" if isinstance(v, float) else f"  {k}: {v}" for k, v in r.items()
                  if isinstance(v, (int, float, str))]
    lines.append(f"  results: {os.path.join(out, 'results.json')}")
    _write("\n".join(lines) + "\n")
    return 0


def _few_label_lines(r: dict) -> list[str]:
    """The few-labels table of an experiment's results (mean +- sd where a label count had several draws)."""
    rows = r.get("few_labels") or []
    lines = ["  labels   pretrained        random            (test accuracy %)"] if rows else []
    for row in rows:
        cells = [f"{row[k + '_accuracy']:6.2f}" + (f" +- {row[k + '_sd']:4.2f}" if "repeats" in row else " " * 8)
                 for k in ("pretrained", "random")]
        draws = f"   mean of {row['repeats']} draws" if "repeats" in row else ""
        lines.append(f"  {row['n_labels']:6d}   {cells[0]}    {cells[1]}{draws}".rstrip())
    return lines


# ============================================================================ parser
def _int_at_least(lo: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v

    parse.__name__ = f"integer >= {lo}"
    return parse


def _finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


_nonneg = _int_at_least(0)
_positive = _int_at_least(1)


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only when there is one to show (and the help does not already say it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Boltzmann machines on PyTorch: create, train and run RBM model files.",
        epilog=EPILOG)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--device", default=None, help="torch device to run on (cpu, cuda, cuda:1, ...)")
    device.add_argument("--threads", type=_positive, default=None, metavar="T",
                        help="CPU threads for torch (default: torch's choice; 1 is often fastest for small models)")
    model = argparse.ArgumentParser(add_help=False, parents=[device])
    model.add_argument("model", metavar="MODEL", help="model file (.safetensors)")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("data", metavar="DATA", nargs="?", default=None,
                      help="rows: .npy, .npz, .csv or whitespace-separated text; stdin when omitted or '-'")
    data.add_argument("--key", default=None, help="array to read from a .npz file (default: the first)")
    seed = argparse.ArgumentParser(add_help=False)
    seed.add_argument("--seed", type=int, default=None,
                      help="random seed for reproducible output (default: fresh randomness)")

    def add(name: str, func: Callable, help: str, parents: Sequence[argparse.ArgumentParser] = (),
            description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description or help, parents=list(parents),
                           formatter_class=_Formatter)
        p.set_defaults(func=func)
        return p

    p = add("init", cmd_init, "create an untrained model file", [model],
            "Create an untrained RBM: weights drawn from N(0, weight_std^2) with --seed, zero biases.")
    p.add_argument("--visible", type=_positive, required=True, metavar="N", help="number of visible units")
    p.add_argument("--hidden", type=_positive, required=True, metavar="M", help="number of hidden units")
    p.add_argument("--learning-rate", type=_finite_float, default=0.05, metavar="LR")
    p.add_argument("--momentum", type=_finite_float, default=0.5)
    p.add_argument("--batch-size", type=_positive, default=10, metavar="B")
    p.add_argument("--k", type=_positive, default=1, help="Gibbs steps per update (CD-k)")
    p.add_argument("--l2", type=_finite_float, default=1e-4, help="weight decay")
    p.add_argument("--persistent", action="store_true", help="persistent chains (PCD) instead of CD")
    p.add_argument("--centering", action="store_true",
                   help="centred RBM: offsets follow the data and hidden means (Melchior et al. 2016)")
    p.add_argument("--ema-decay", type=_finite_float, default=0.0, metavar="D",
                   help="the trained model is the moving average of the parameters over the updates "
                        "(Polyak averaging; e.g. 0.9998; 0: off)")
    p.add_argument("--visible-units", choices=UNIT_CHOICES_VISIBLE, default="bernoulli")
    p.add_argument("--group-size", type=_positive, default=None,
                   help="units per softmax group (--visible-units softmax; default: one group)")
    p.add_argument("--hidden-units", choices=UNIT_CHOICES_HIDDEN, default="bernoulli")
    p.add_argument("--weight-std", type=_finite_float, default=0.01, help="std of the initial weights")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and of training")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--force", action="store_true", help="overwrite an existing MODEL")

    p = add("train", cmd_train, "train a model file, or run the embedded demo", [device],
            "With MODEL: train it for --epochs more epochs on DATA (or stdin) and save it back in place.\n"
            "Without MODEL: the demo, a BernoulliRBM on scikit-learn's 8x8 digits (binarised), writing\n"
            "model.safetensors, filters.png, samples.png, reconstructions.png, curves.png and\n"
            "metrics.json to --out.")
    p.add_argument("model", metavar="MODEL", nargs="?", default=None, help="model file to train (omit for the demo)")
    p.add_argument("data", metavar="DATA", nargs="?", default=None,
                   help="training rows: .npy, .npz, .csv or text; stdin when omitted or '-'")
    p.add_argument("--key", default=None, help="array to read from a .npz file (default: the first)")
    p.add_argument("--epochs", type=_nonneg, default=None,
                   help="epochs to train (required with MODEL; demo default 30)")
    p.add_argument("--validation", metavar="FILE", default=None, help="validation rows (model training)")
    p.add_argument("--dataset", default=None, help=f"embedded dataset ({', '.join(sorted(DATASETS))})")
    p.add_argument("--out", metavar="DIR", default=None, help=f"demo output folder (default {DEMO_OUT})")
    p.add_argument("--quiet", "-q", action="store_true", help="no per-epoch lines or progress bar")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (demo default 0; a model file continues its saved stream)")
    p.add_argument("--hidden", type=_positive, default=None, metavar="M", help="hidden units of the demo (64)")
    p.add_argument("--learning-rate", type=_finite_float, default=None, metavar="LR",
                   help="override the learning rate (demo 0.05)")
    p.add_argument("--momentum", type=_finite_float, default=None, help="override the momentum (demo 0.5)")
    p.add_argument("--batch-size", type=_positive, default=None, metavar="B", help="override (demo 10)")
    p.add_argument("--k", type=_positive, default=None, help="override the Gibbs steps per update (demo 1)")
    p.add_argument("--l2", type=_finite_float, default=None, help="override the weight decay")
    p.add_argument("--ema-decay", type=_finite_float, default=None, metavar="D",
                   help="override the parameter averaging (0: off, the demo's default)")
    p.add_argument("--checkpoint", metavar="FILE", default=None,
                   help="save the training state to FILE every --checkpoint-every epochs; if FILE exists, "
                        "training resumes from it (an interrupted run started again finishes identically)")
    p.add_argument("--checkpoint-every", type=_positive, default=1, metavar="E",
                   help="epochs between checkpoints")
    p.add_argument("--logdir", metavar="DIR", default=None,
                   help="write TensorBoard logs (scalars, histograms, filter and particle images) to DIR")
    p.add_argument("--metrics-every", type=_positive, default=None, metavar="E",
                   help="record and print metrics every E epochs (default: about 20 times per run)")

    p = add("run-visible", cmd_run_visible, "hidden states sampled given visible rows", [model, data, seed])
    p.add_argument("--mean", action="store_true", help="print hidden probabilities instead of samples")
    p = add("run-hidden", cmd_run_hidden, "visible states sampled given hidden rows", [model, data, seed])
    p.add_argument("--mean", action="store_true", help="print visible means instead of samples")

    p = add("daydream", cmd_daydream, "let the machine run freely from random visible probabilities",
            [model, seed],
            "Print the final visible states of N dreams of STEPS Gibbs sweeps each, one row per dream;\n"
            "with --trace every step of one dream (row 0: the random start probabilities).")
    p.add_argument("steps", metavar="STEPS", type=_nonneg, help="Gibbs sweeps per dream")
    p.add_argument("n_dreams", metavar="N", type=_positive, nargs="?", default=None, help="dreams (default 1)")
    p.add_argument("--trace", action="store_true", help="print every step of one dream")

    p = add("sample", cmd_sample, "samples after Gibbs sweeps from random starts", [model, seed])
    p.add_argument("n", metavar="N", type=_positive, help="number of samples")
    p.add_argument("--steps", type=_nonneg, default=1000, metavar="S", help="Gibbs sweeps")
    p.add_argument("--mean", action="store_true", help="print E[v | h] of the last sweep instead of states")

    add("transform", cmd_transform, "hidden probabilities E[h | v] of visible rows", [model, data])
    add("reconstruct", cmd_reconstruct, "E[v | E[h | v]]: one deterministic up-down pass", [model, data])

    p = add("evaluate", cmd_evaluate, "estimate log Z (AIS and reverse AIS) and the log-likelihood or ELBO of data",
            [model])
    p.add_argument("data", nargs="?", metavar="DATA", help="rows to evaluate: .npy, .npz, .csv or text; stdin when "
                                                            "omitted")
    p.add_argument("--key", default=None, help="array to read from a .npz file")
    p.add_argument("--runs", type=_positive, default=100, help="AIS runs")
    p.add_argument("--betas", type=_positive, default=None, help="intermediate distributions (default: 14,500)")
    p.add_argument("--burn-in", type=_positive, default=1000, help="Gibbs sweeps before the reverse-AIS samples")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p = add("recommend", cmd_recommend, "recommend movies to a user with a RatingsRBM model file", [model])
    p.add_argument("--user", type=int, required=True, help="user id (as in the ratings file)")
    p.add_argument("-n", type=_positive, default=10, help="how many items")
    p.add_argument("--include-rated", action="store_true", help="also list items the user rated in training")
    p.add_argument("--variant", default="100k", choices=("100k", "1m"), help="MovieLens variant for the titles")
    p.add_argument("--data-dir", default=None, help="data folder for the titles (default: HARMONIUM_DATA)")
    p = add("experiment", cmd_experiment, "run a published-experiment reproduction (rbm-mnist, ...)", (),
            "Run one reproduction of harmonium.experiments on real data (MNIST or MovieLens 100K from\n"
            "HARMONIUM_DATA or --data-dir; scikit-learn's sample photographs), writing results.json (and\n"
            "pictures) to --out, and print its numbers.")
    p.add_argument("name", metavar="NAME", help="experiment: rbm-mnist, rbm-mnist-likelihood, dbm-mnist, "
                   "grbm-patches or movielens")
    p.add_argument("--quick", action="store_true", help="a small, fast version (2000 rows, tiny model)")
    p.add_argument("--out", metavar="DIR", default=None, help="output folder (default out/experiments/NAME)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--data-dir", metavar="DIR", default=None, help="data folder (default: HARMONIUM_DATA)")
    p.add_argument("--threads", type=_positive, default=None, metavar="T", help="CPU threads for torch")
    p.add_argument("--device", default=None, help="torch device of the models (cpu, cuda, cuda:1, mps)")
    p.add_argument("--config", metavar="JSON", default=None,
                   help="entries replacing the preset's, as a JSON object, e.g. '{\"epochs\": 200}'")
    p = add("info", cmd_info, "describe a model file", [model])
    p.add_argument("--json", action="store_true", help="print JSON")
    parser._harmonium_commands = dict(sub.choices)  # type: ignore[attr-defined]
    return parser


# ============================================================================ entry point
def _user_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [UserError, ValueError, OSError]
    try:
        from sklearn.exceptions import NotFittedError

        types.append(NotFittedError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from safetensors import SafetensorError

        types.append(SafetensorError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


def _message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.strerror}: {e.filename}"
    text = str(e) or type(e).__name__
    return text


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse with options allowed anywhere among a subcommand's positionals
    (``train MODEL --epochs 5 DATA``), which plain argparse refuses for optional positionals."""
    commands: dict[str, argparse.ArgumentParser] = getattr(parser, "_harmonium_commands", {})
    for i, arg in enumerate(argv):
        if arg == "--" or arg.startswith("-"):
            if arg in ("-h", "--help", "--version", "--"):
                break
            continue
        if arg in commands:
            args = commands[arg].parse_intermixed_args(argv[i + 1:])
            args.command = arg
            return args
        break
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Under torchrun (a process group was created), every rank leaves together and the process
    ends right after flushing its output: with torch 2.13's gloo backend the interpreter's
    finalization now and then aborts ("terminate called without an active exception")."""
    status = _run(argv)
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        if status == 0:  # a failed rank leaves at once: torchrun then stops the others
            dist.barrier()
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _run(argv: Sequence[str] | None) -> int:
    debug = bool(os.environ.get("HARMONIUM_DEBUG"))
    parser = build_parser()
    try:
        args = parse_args(parser, list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:  # --help, --version, or a usage error (already printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    user_errors = _user_error_types()
    try:
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        return int(args.func(args) or 0)
    except BrokenPipeError:  # stdout closed early (`... | head`): not an error
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except user_errors as e:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {_message(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if debug:
            raise
        print(f"{PROG}: internal error: {type(e).__name__}: {e}\n"
              f"{PROG}: this is a bug; set HARMONIUM_DEBUG=1 to see the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
