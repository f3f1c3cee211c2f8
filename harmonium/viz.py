"""Matplotlib pictures for Boltzmann machines.

Every plotting function builds a :class:`matplotlib.figure.Figure` directly and
attaches a non-interactive Agg canvas to it.  The pyplot state machine is never
touched, so these functions are safe to call from worker threads, never open a
window and leave the user's chosen matplotlib backend alone.

Inputs may be numpy arrays, torch tensors (on any device, with or without
gradients) or nested sequences.  Images are always given as rows of flattened
pixels, ``(n_images, height * width)``, the layout used by RBM weight matrices
(like scikit-learn's ``components_``) and by visible-unit samples.
"""

from __future__ import annotations

import math
import os
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "tile_images",
    "plot_filters",
    "plot_samples",
    "plot_reconstructions",
    "plot_curves",
    "animate_chain",
]

ArrayLike = Any  # numpy array, torch tensor or nested sequence of numbers
PathLike = Union[str, "os.PathLike[str]"]

# Colour drawn where a mosaic holds NaN (padding and empty grid slots).  It is
# deliberately not a gray so that it never blends with pixel values.
_BACKGROUND = "#a9bcd0"
_SPLIT_PREFIXES = ("train", "val", "valid", "validation", "test")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _to_numpy(x: ArrayLike) -> np.ndarray:
    """Convert a numpy array, torch tensor or sequence to a float numpy array."""
    if hasattr(x, "detach"):
        x = np.asarray(x.detach().cpu())
    return np.asarray(x, dtype=np.float64)


def _as_rows(x: ArrayLike, name: str) -> np.ndarray:
    """Return ``x`` as a non-empty 2-D float array ``(n_images, n_pixels)``."""
    arr = _to_numpy(x)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of flattened images (n_images, n_pixels); "
            f"got shape {tuple(arr.shape)}"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty; got shape {tuple(arr.shape)}")
    return arr


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def _image_shape(shape: Optional[Sequence[int]], n_pixels: int, name: str) -> Tuple[int, int]:
    """Resolve the (height, width) of one image holding ``n_pixels`` pixels."""
    if shape is None:
        side = math.isqrt(n_pixels)
        if side * side != n_pixels:
            raise ValueError(
                f"{name} rows have {n_pixels} pixels, which is not a perfect square; "
                f"pass shape=(height, width) explicitly"
            )
        return side, side
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a pair (height, width); got {shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"shape must hold two positive integers; got {tuple(shape)!r}")
    if h * w != n_pixels:
        raise ValueError(
            f"shape {(h, w)} holds {h * w} pixels but {name} rows have {n_pixels} pixels"
        )
    return h, w


def _new_figure(figsize: Tuple[float, float]) -> Figure:
    """A pyplot-free figure with an Agg canvas attached."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _mosaic_figsize(mosaic: np.ndarray, extra_height: float = 0.0) -> Tuple[float, float]:
    """A figure size that keeps mosaic pixels square and the figure readable."""
    h, w = mosaic.shape
    scale = min(8.0 / w, 8.0 / h, 0.15)
    width = max(2.0, w * scale)
    height = max(1.0, h * scale) + extra_height
    return width, height


def _cmap(name: str) -> matplotlib.colors.Colormap:
    return matplotlib.colormaps[name].with_extremes(bad=_BACKGROUND)


def _show_mosaic(ax: Any, mosaic: np.ndarray, cmap: str, vmin: float, vmax: float) -> Any:
    ax.set_axis_off()
    return ax.imshow(
        np.ma.masked_invalid(mosaic),
        cmap=_cmap(cmap),
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )


def _prepare_target(path: PathLike, suffix: str) -> Tuple[Path, Path]:
    """Create the parent folder of ``path`` and pick a temporary sibling file."""
    target = Path(os.fspath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp{suffix}"
    return target, tmp


def _save_figure(fig: Figure, path: PathLike) -> None:
    """Save ``fig`` as PNG at ``path`` atomically (temporary file + os.replace)."""
    target, tmp = _prepare_target(path, ".png")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------
# tiling
# --------------------------------------------------------------------------
def tile_images(
    images: ArrayLike,
    shape: Optional[Sequence[int]] = None,
    n_cols: Optional[int] = None,
    normalize: Optional[str] = "each",
    padding: int = 1,
) -> np.ndarray:
    """Arrange flattened images ``(n, h*w)`` into one 2-D mosaic array.

    Tiles fill the grid row by row; ``n_cols`` defaults to ``ceil(sqrt(n))``.
    The mosaic has shape ``(rows*h + (rows-1)*padding, n_cols*w + (n_cols-1)*padding)``.
    ``normalize="each"`` scales each tile to [0, 1] by its own min/max (constant
    tiles become 0.5), ``"all"`` uses the global min/max, ``None`` keeps values.
    Padding and unused grid slots are NaN so that they render as background.
    """
    arr = _as_rows(images, "images")
    n, n_pixels = arr.shape
    h, w = _image_shape(shape, n_pixels, "images")
    if n_cols is None:
        n_cols = math.ceil(math.sqrt(n))
    n_cols = _positive_int(n_cols, "n_cols")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer; got {padding!r}")
    padding = int(padding)
    if normalize not in ("each", "all", None):
        raise ValueError(f"normalize must be 'each', 'all' or None; got {normalize!r}")

    tiles = arr.reshape(n, h, w).copy()
    with warnings.catch_warnings():
        # all-NaN tiles legitimately give NaN min/max; leave them NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        if normalize == "each":
            lo = np.nanmin(tiles, axis=(1, 2), keepdims=True)
            hi = np.nanmax(tiles, axis=(1, 2), keepdims=True)
            span = hi - lo
            flat = span == 0
            tiles = (tiles - lo) / np.where(flat, 1.0, span)
            tiles = np.where(flat, 0.5, tiles)
        elif normalize == "all":
            lo, hi = np.nanmin(tiles), np.nanmax(tiles)
            tiles = np.full_like(tiles, 0.5) if hi == lo else (tiles - lo) / (hi - lo)
        if normalize is not None:
            tiles = np.where(np.isnan(arr.reshape(n, h, w)), np.nan, tiles)

    n_rows = math.ceil(n / n_cols)
    mosaic = np.full(
        (n_rows * h + (n_rows - 1) * padding, n_cols * w + (n_cols - 1) * padding),
        np.nan,
    )
    for i in range(n):
        r, c = divmod(i, n_cols)
        top, left = r * (h + padding), c * (w + padding)
        mosaic[top : top + h, left : left + w] = tiles[i]
    return mosaic


# --------------------------------------------------------------------------
# static pictures
# --------------------------------------------------------------------------
def plot_filters(
    weights: ArrayLike,
    shape: Optional[Sequence[int]] = None,
    n_max: int = 100,
    path: Optional[PathLike] = None,
    title: Optional[str] = None,
) -> Figure:
    """Show the first ``n_max`` rows of ``weights`` ``(n_filters, n_pixels)`` as images.

    Each filter is scaled to its own min/max and drawn with a gray colormap.
    """
    arr = _as_rows(weights, "weights")
    n_max = _positive_int(n_max, "n_max")
    mosaic = tile_images(arr[:n_max], shape=shape, normalize="each")
    fig = _new_figure(_mosaic_figsize(mosaic, 0.4 if title else 0.0))
    ax = fig.add_subplot()
    _show_mosaic(ax, mosaic, "gray", 0.0, 1.0)
    if title:
        ax.set_title(title)
    if path is not None:
        _save_figure(fig, path)
    return fig


def plot_samples(
    samples: ArrayLike,
    shape: Optional[Sequence[int]] = None,
    path: Optional[PathLike] = None,
    title: Optional[str] = None,
    n_max: int = 100,
) -> Figure:
    """Show the first ``n_max`` samples ``(n_samples, n_pixels)`` in a grid.

    Values are drawn as they are on a [0, 1] ``gray_r`` scale, so ink is dark.
    """
    arr = _as_rows(samples, "samples")
    n_max = _positive_int(n_max, "n_max")
    mosaic = tile_images(arr[:n_max], shape=shape, normalize=None)
    fig = _new_figure(_mosaic_figsize(mosaic, 0.4 if title else 0.0))
    ax = fig.add_subplot()
    _show_mosaic(ax, mosaic, "gray_r", 0.0, 1.0)
    if title:
        ax.set_title(title)
    if path is not None:
        _save_figure(fig, path)
    return fig


def plot_reconstructions(
    originals: ArrayLike,
    reconstructions: ArrayLike,
    shape: Optional[Sequence[int]] = None,
    n: int = 10,
    path: Optional[PathLike] = None,
    title: Optional[str] = None,
) -> Figure:
    """Show the first ``n`` originals (top row) above their reconstructions (bottom row).

    Both rows use a [0, 1] ``gray_r`` scale.
    """
    orig = _as_rows(originals, "originals")
    recon = _as_rows(reconstructions, "reconstructions")
    if orig.shape != recon.shape:
        raise ValueError(
            f"originals and reconstructions must have the same shape; got "
            f"originals {tuple(orig.shape)} and reconstructions {tuple(recon.shape)}"
        )
    n = min(_positive_int(n, "n"), orig.shape[0])
    top = tile_images(orig[:n], shape=shape, n_cols=n, normalize=None)
    bottom = tile_images(recon[:n], shape=shape, n_cols=n, normalize=None)
    width, height = _mosaic_figsize(np.vstack([top, bottom]), 0.4 if title else 0.0)
    fig = _new_figure((width + 0.8, height + 0.2))
    axes = fig.subplots(2, 1)
    for ax, mosaic, label in zip(axes, (top, bottom), ("original", "reconstruction")):
        _show_mosaic(ax, mosaic, "gray_r", 0.0, 1.0)
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title)
    if path is not None:
        _save_figure(fig, path)
    return fig


def _split_metric(key: str) -> Tuple[str, Optional[str]]:
    """``"val_pseudo_log_likelihood"`` -> ``("pseudo_log_likelihood", "val")``."""
    for prefix in _SPLIT_PREFIXES:
        if key.startswith(prefix + "_") and len(key) > len(prefix) + 1:
            return key[len(prefix) + 1 :], prefix
    return key, None


def _series(values: Any, key: str) -> np.ndarray:
    """Per-epoch values (possibly with None) as a 1-D float array with NaN gaps."""
    if hasattr(values, "detach"):
        values = np.asarray(values.detach().cpu())
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(
                f"history[{key!r}] must be 1-D (one value per epoch); "
                f"got shape {tuple(values.shape)}"
            )
        return values.astype(np.float64)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(
            f"history[{key!r}] must be a list of per-epoch values; got {type(values).__name__}"
        )
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None:
            continue
        if hasattr(v, "item"):
            v = v.item()
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise ValueError(
                f"history[{key!r}][{i}] must be a number or None; got {v!r}"
            ) from None
    return out


def plot_curves(
    history: Mapping[str, Sequence[Optional[float]]],
    path: Optional[PathLike] = None,
    title: Optional[str] = None,
) -> Figure:
    """Plot per-epoch training curves, one subplot per metric.

    ``history`` maps metric names to lists of per-epoch values; None or NaN
    entries (epochs where the metric was not computed) are skipped.  An
    optional ``"epoch"`` key gives the x values (default 1, 2, ...).  Keys
    ``train_X`` and ``val_X`` (also ``valid_``, ``validation_``, ``test_``)
    share the subplot of metric ``X`` with a legend.
    """
    if not isinstance(history, Mapping):
        raise ValueError(f"history must be a dict of metric name -> values; got {type(history).__name__}")
    epochs: Optional[np.ndarray] = None
    if "epoch" in history:
        epochs = _series(history["epoch"], "epoch")
    metrics = {str(k): _series(v, str(k)) for k, v in history.items() if k != "epoch"}
    if not metrics:
        raise ValueError(f"history holds no metrics; got keys {list(history.keys())!r}")
    if epochs is not None:
        for key, ys in metrics.items():
            if len(ys) != len(epochs):
                raise ValueError(
                    f"history[{key!r}] has {len(ys)} values but history['epoch'] has {len(epochs)}"
                )

    groups: dict[str, list[Tuple[str, Optional[str], np.ndarray]]] = {}
    for key, ys in metrics.items():
        metric, split = _split_metric(key)
        groups.setdefault(metric, []).append((key, split, ys))

    n_plots = len(groups)
    n_cols = min(n_plots, 3)
    n_rows = math.ceil(n_plots / n_cols)
    fig = _new_figure((4.0 * n_cols, 3.0 * n_rows + (0.4 if title else 0.0)))
    axes = np.atleast_1d(fig.subplots(n_rows, n_cols, squeeze=False)).ravel()
    for ax, (metric, series) in zip(axes, groups.items()):
        for key, split, ys in series:
            xs = epochs if epochs is not None else np.arange(1, len(ys) + 1, dtype=float)
            keep = np.isfinite(ys) & np.isfinite(xs)
            ax.plot(
                xs[keep],
                ys[keep],
                marker="o" if keep.sum() <= 30 else None,
                markersize=3,
                label=split if split is not None else key,
            )
        if len(series) > 1 or series[0][1] is not None:
            ax.legend(fontsize=8)
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    for ax in axes[n_plots:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    if path is not None:
        _save_figure(fig, path)
    return fig


# --------------------------------------------------------------------------
# animation
# --------------------------------------------------------------------------
def animate_chain(
    frames: ArrayLike,
    shape: Optional[Sequence[int]] = None,
    path: Optional[PathLike] = None,
    fps: int = 10,
) -> Path:
    """Write an animated GIF of Gibbs chains and return its path.

    ``frames`` has shape ``(n_steps, n_chains, n_pixels)``; each GIF frame shows
    all chains of one step tiled on a [0, 1] ``gray_r`` scale, with the step
    number as title (so every step yields its own GIF frame).  Without
    ``path`` the GIF goes to a new file in the system temporary folder.
    """
    from matplotlib.animation import PillowWriter

    arr = _to_numpy(frames)
    if arr.ndim != 3:
        raise ValueError(
            f"frames must be a 3-D array (n_steps, n_chains, n_pixels); got shape {tuple(arr.shape)}"
        )
    if arr.size == 0:
        raise ValueError(f"frames is empty; got shape {tuple(arr.shape)}")
    fps = _positive_int(fps, "fps")
    n_steps, n_chains, n_pixels = arr.shape
    h, w = _image_shape(shape, n_pixels, "frames")
    if path is None:
        import tempfile

        fd, name = tempfile.mkstemp(prefix="harmonium_chain_", suffix=".gif")
        os.close(fd)
        path = name

    mosaics = [tile_images(arr[t], shape=(h, w), normalize=None) for t in range(n_steps)]
    fig = _new_figure(_mosaic_figsize(mosaics[0], 0.4))
    ax = fig.add_subplot()
    image = _show_mosaic(ax, mosaics[0], "gray_r", 0.0, 1.0)
    heading = ax.set_title("")

    target, tmp = _prepare_target(path, ".gif")
    writer = PillowWriter(fps=fps)
    try:
        with writer.saving(fig, os.fspath(tmp), dpi=fig.dpi):
            for t, mosaic in enumerate(mosaics):
                image.set_data(np.ma.masked_invalid(mosaic))
                heading.set_text(f"step {t + 1}/{n_steps}")
                writer.grab_frame()
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
