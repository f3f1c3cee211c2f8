"""TensorBoard logs of training: scalars, histograms and images, through ``torch.utils.tensorboard``.

Written once per recorded epoch (never inside the update loop):

* scalars     every metric in the estimator's ``history_`` (``train/...``, ``val/...``);
* histograms  weights, biases, their change since the last log, and the hidden activation
              probabilities on the metric rows;
* images      the filters (columns of W) and the negative particles as tiles, when the
              visible layer is a square image (or ``image_shape`` says its shape).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["TensorBoardLogger"]


def _square(n: int) -> tuple[int, int] | None:
    r = int(math.isqrt(n))
    return (r, r) if r * r == n else None


class TensorBoardLogger:
    """Writes an estimator's training to ``log_dir`` (one event file per run)."""

    def __init__(self, log_dir: str, image_shape: tuple[int, int] | None = None, max_images: int = 64) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("TensorBoard logging needs the tensorboard package: "
                              "pip install 'harmonium[tensorboard]'") from e
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.image_shape = image_shape
        self.max_images = max_images
        self._previous: dict[str, Tensor] = {}

    def _tiles(self, rows: Tensor, shape: tuple[int, int], normalize: bool) -> np.ndarray:
        from .viz import tile_images
        img = tile_images(rows[: self.max_images].detach().cpu().numpy(), shape=shape,
                          normalize="each" if normalize else None)
        return np.nan_to_num(img, nan=0.0).clip(0, 1)[None]  # CHW

    def log_epoch(self, epoch: int, values: dict[str, float], model: torch.nn.Module, filters: Tensor,
                  activations: dict[str, Tensor], particles: Tensor | None) -> None:
        """One recorded epoch: ``values`` as scalars, ``model``'s parameters (and their change) and
        ``activations`` (name -> hidden activation probabilities) as histograms, ``filters`` (one
        visible-sized row per filter) and the visible ``particles`` as tiles."""
        w = self.writer
        for key, val in values.items():
            split, _, name = key.partition("_")
            tag = f"{split}/{name}" if split in ("train", "val") else f"metrics/{key}"
            w.add_scalar(tag, val, epoch)
        for name, p in model.named_parameters():
            p = p.detach()
            w.add_histogram(f"parameters/{name}", p.cpu(), epoch)
            prev = self._previous.get(name)
            if prev is not None:
                w.add_histogram(f"updates/{name}", (p - prev).cpu(), epoch)
            self._previous[name] = p.clone()
        for name, a in activations.items():
            w.add_histogram(f"{name}/activation_probability", a.detach().cpu(), epoch)
        shape = self.image_shape or _square(filters.shape[1])
        if shape is not None:
            w.add_image("filters", self._tiles(filters, shape, normalize=True), epoch)
            if particles is not None:
                w.add_image("negative_particles", self._tiles(particles, shape, normalize=False), epoch)
        w.flush()

    def close(self) -> None:
        self.writer.close()
