"""Model files: one safetensors file per model, loadable without executing code.

Layout of ``model.safetensors``:

* tensors: the torch model's state (``model.W``, ``model.visible.bias``, ...), the training
  state (``trainer.optimizer.state.<i>.<key>``, ``trainer.chains.<name>``,
  ``trainer.hidden_activity``, a DBM's ``trainer.offsets``) and the random generator state (``rng``);
* metadata (the safetensors header's ``__metadata__``, strings only): ``format`` =
  "harmonium", ``format_version``, and ``config``: JSON with the estimator class, its
  hyperparameters, the unit types, the training history and the non-tensor training state.

Saving writes a temporary file in the destination folder, flushes and fsyncs it, then renames
it over the destination: a crash leaves either the old file or the new one, never a mixture.
Loading checks the format and version, parses JSON only, and checks every tensor's declared
shape against the configuration before anything is allocated.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION", "register_estimator"]

FORMAT = "harmonium"
FORMAT_VERSION = 1
_ESTIMATORS: dict[str, type] = {}


def register_estimator(cls: type) -> type:
    """Make an estimator class loadable: it implements ``_get_state() -> (config, tensors)`` and
    ``_from_state(config, tensors)`` (a classmethod)."""
    _ESTIMATORS[cls.__name__] = cls
    return cls


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file beside it, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save(estimator, path: str | os.PathLike) -> Path:
    """Save a fitted estimator (weights, hyperparameters, training state) to ``path``."""
    name = type(estimator).__name__
    if name not in _ESTIMATORS:
        raise TypeError(f"{name} is not a saveable harmonium estimator")
    config, tensors = estimator._get_state()
    config = {"class": name, **config}
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "config": json.dumps(config)}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(tensors, metadata=meta))
    return Path(path)


def load(path: str | os.PathLike, *, device: str | None = None):
    """Load an estimator saved by ``save``.  Raises ``OSError`` for a missing or unreadable file and
    ``ValueError`` for anything that is not a valid harmonium model file of a supported version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    size = path.stat().st_size
    if size < 8:
        raise ValueError(f"{path} is not a harmonium model file: {size} bytes, too short")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            config = _check_header(path, meta)
            cls = _ESTIMATORS.get(config.get("class"))
            if cls is None:
                raise ValueError(f"{path}: unknown estimator class {config.get('class')!r}")
            expected = cls._expected_shapes(config)
            _check_shapes(path, shapes, expected)
            tensors = {k: f.get_tensor(k) for k in shapes}
    except SafetensorError as e:
        raise ValueError(f"{path} is not a valid harmonium model file (corrupt or truncated): {e}") from None
    except (UnicodeDecodeError, OverflowError) as e:
        raise ValueError(f"{path} is not a valid harmonium model file: {e}") from None
    except (KeyError, TypeError, AttributeError) as e:  # a configuration of the wrong structure
        raise ValueError(f"{path}: inconsistent model file ({type(e).__name__}: {e})") from None
    try:
        return cls._from_state(config, tensors, device=device)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: inconsistent model file ({type(e).__name__}: {e})") from None


def _check_header(path: Path, meta: dict[str, str]) -> dict[str, Any]:
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not a harmonium model (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if version != str(FORMAT_VERSION):
        raise ValueError(f"{path} has model format version {version!r}; this harmonium reads version "
                         f"{FORMAT_VERSION}")
    try:
        config = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable model configuration: {e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: model configuration is not a JSON object")
    return config


def _check_shapes(path: Path, shapes: dict[str, tuple], expected: dict[str, tuple | None]) -> None:
    """``expected`` maps required tensor names to shapes (None: any shape, checked later)."""
    missing = [k for k in expected if k not in shapes and not k.endswith(("?", "*"))]
    if missing:
        raise ValueError(f"{path}: missing tensors {missing}")
    for k, shape in shapes.items():
        want = expected.get(k, expected.get(k + "?", "unknown"))
        if want == "unknown" and not any(k.startswith(p[:-1]) for p in expected if p.endswith("*")):
            raise ValueError(f"{path}: unexpected tensor {k!r}")
        if isinstance(want, tuple) and want != shape:
            raise ValueError(f"{path}: tensor {k!r} has shape {shape}, the configuration says {want}")
