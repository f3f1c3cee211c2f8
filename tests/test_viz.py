"""Tests for harmonium.viz (matplotlib pictures, Agg only)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure


def _load_viz():
    """Import harmonium.viz; fall back to loading the file directly when the
    package ``__init__`` is missing or does not import yet."""
    try:
        return importlib.import_module("harmonium.viz")
    except Exception:
        file = Path(__file__).resolve().parents[1] / "harmonium" / "viz.py"
        spec = importlib.util.spec_from_file_location("_harmonium_viz_standalone", file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


viz = _load_viz()

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert len(data) > len(PNG_MAGIC)
    assert data.startswith(PNG_MAGIC)
    # no temporary files left next to the result
    assert [p.name for p in path.parent.iterdir()] == [path.name]


# ---------------------------------------------------------------- tile_images
def test_tile_images_shape_arithmetic_and_padding():
    images = np.arange(6 * 15, dtype=float).reshape(6, 15)  # 6 images of 3x5
    mosaic = viz.tile_images(images, shape=(3, 5), n_cols=4, normalize=None, padding=1)
    # 2 rows of 4 columns: height 2*3 + 1, width 4*5 + 3
    assert mosaic.shape == (7, 23)
    # tile 0 at top-left, tile 5 at row 1 column 1, unchanged values
    np.testing.assert_array_equal(mosaic[0:3, 0:5], images[0].reshape(3, 5))
    np.testing.assert_array_equal(mosaic[0:3, 18:23], images[3].reshape(3, 5))
    np.testing.assert_array_equal(mosaic[4:7, 6:11], images[5].reshape(3, 5))
    # padding row and padding columns are NaN
    assert np.isnan(mosaic[3, :]).all()
    for col in (5, 11, 17):
        assert np.isnan(mosaic[:, col]).all()
    # the two unused slots (row 1, columns 2 and 3) are NaN
    assert np.isnan(mosaic[4:7, 12:23]).all()
    # everything else is finite: 6 tiles of 15 pixels
    assert np.isfinite(mosaic).sum() == 6 * 15


def test_tile_images_no_padding_and_defaults():
    images = np.random.default_rng(0).random((5, 16))
    mosaic = viz.tile_images(images, padding=0)  # 4x4 tiles, 3 columns, 2 rows
    assert mosaic.shape == (8, 12)
    mosaic = viz.tile_images(images, shape=(2, 8), n_cols=5, padding=2)
    assert mosaic.shape == (2, 5 * 8 + 4 * 2)
    assert np.isnan(mosaic[:, 8:10]).all()  # padding columns


def test_tile_images_accepts_torch_tensor():
    torch = pytest.importorskip("torch")
    t = torch.arange(8, dtype=torch.float32, requires_grad=True).reshape(2, 4)
    mosaic = viz.tile_images(t, normalize=None, n_cols=2, padding=0)
    np.testing.assert_array_equal(mosaic, [[0, 1, 4, 5], [2, 3, 6, 7]])


def test_tile_images_normalize_each():
    images = np.array([[0.0, 2.0, 4.0, 6.0], [5.0, 5.0, 5.0, 5.0], [-1.0, 1.0, 1.0, -1.0]])
    mosaic = viz.tile_images(images, shape=(1, 4), n_cols=3, normalize="each", padding=1)
    assert mosaic.shape == (1, 14)
    np.testing.assert_allclose(mosaic[0, 0:4], [0.0, 1 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(mosaic[0, 5:9], [0.5, 0.5, 0.5, 0.5])  # constant tile
    np.testing.assert_allclose(mosaic[0, 10:14], [0.0, 1.0, 1.0, 0.0])
    assert np.isnan(mosaic[0, [4, 9]]).all()


def test_tile_images_normalize_all_and_none():
    images = np.array([[0.0, 2.0], [4.0, 8.0]])
    mosaic = viz.tile_images(images, shape=(1, 2), n_cols=2, normalize="all", padding=0)
    np.testing.assert_allclose(mosaic, [[0.0, 0.25, 0.5, 1.0]])
    mosaic = viz.tile_images(images, shape=(1, 2), n_cols=1, normalize=None, padding=0)
    np.testing.assert_array_equal(mosaic, [[0.0, 2.0], [4.0, 8.0]])
    flat = viz.tile_images(np.full((2, 4), 3.0), normalize="all")
    assert np.nanmax(flat) == np.nanmin(flat) == 0.5


def test_tile_images_errors():
    with pytest.raises(ValueError, match="perfect square"):
        viz.tile_images(np.zeros((3, 15)))
    with pytest.raises(ValueError, match=r"images.*\(2, 3, 4\)"):
        viz.tile_images(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"images.*empty.*\(0, 4\)"):
        viz.tile_images(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="shape"):
        viz.tile_images(np.zeros((2, 15)), shape=(4, 4))
    with pytest.raises(ValueError, match="normalize"):
        viz.tile_images(np.zeros((2, 4)), normalize="max")


# ---------------------------------------------------------------- plots
def test_plot_filters_writes_png(tmp_path):
    weights = np.random.default_rng(1).normal(size=(12, 15))
    path = tmp_path / "nested" / "dir" / "filters.png"
    fig = viz.plot_filters(weights, shape=(3, 5), n_max=10, path=path, title="filters")
    assert isinstance(fig, Figure)
    _assert_png(path)


def test_plot_filters_without_path_and_torch():
    torch = pytest.importorskip("torch")
    fig = viz.plot_filters(torch.randn(4, 9, requires_grad=True))
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match=r"weights.*\(9,\)"):
        viz.plot_filters(np.zeros(9))


def test_plot_samples_writes_png(tmp_path):
    samples = (np.random.default_rng(2).random((7, 16)) > 0.5).astype(float)
    path = tmp_path / "samples.png"
    fig = viz.plot_samples(samples, path=path, title="samples")
    assert isinstance(fig, Figure)
    _assert_png(path)
    with pytest.raises(ValueError, match=r"samples.*empty"):
        viz.plot_samples(np.zeros((0, 16)))


def test_plot_reconstructions_writes_png(tmp_path):
    rng = np.random.default_rng(3)
    originals = rng.random((6, 15))
    path = tmp_path / "recon.png"
    fig = viz.plot_reconstructions(originals, originals * 0.9, shape=(3, 5), n=4, path=path)
    assert isinstance(fig, Figure)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2
    _assert_png(path)
    with pytest.raises(ValueError, match="same shape"):
        viz.plot_reconstructions(originals, originals[:3])


def test_plot_curves_groups_train_and_val(tmp_path):
    history = {
        "epoch": [1, 2, 3, 4],
        "train_reconstruction_error": [0.5, 0.4, 0.3, 0.25],
        "val_reconstruction_error": [None, 0.45, None, 0.3],
        "val_pseudo_log_likelihood": [float("nan"), -80.0, None, -70.0],
        "learning_rate": [0.1, 0.1, 0.05, 0.05],
    }
    path = tmp_path / "curves.png"
    fig = viz.plot_curves(history, path=path, title="training")
    assert isinstance(fig, Figure)
    _assert_png(path)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3
    by_title = {ax.get_title(): ax for ax in visible}
    recon = by_title["reconstruction error"]
    labels = [t.get_text() for t in recon.get_legend().get_texts()]
    assert labels == ["train", "val"]
    train_line, val_line = recon.get_lines()
    np.testing.assert_array_equal(train_line.get_xdata(), [1, 2, 3, 4])
    np.testing.assert_array_equal(val_line.get_xdata(), [2, 4])  # None skipped
    np.testing.assert_allclose(val_line.get_ydata(), [0.45, 0.3])
    pll = by_title["pseudo log likelihood"].get_lines()[0]
    np.testing.assert_array_equal(pll.get_xdata(), [2, 4])  # NaN and None skipped
    assert by_title["learning rate"].get_legend() is None
    assert all(ax.get_xlabel() == "epoch" for ax in visible)


def test_plot_curves_default_epochs_and_errors():
    fig = viz.plot_curves({"loss": [3.0, None, 1.0]})
    (line,) = fig.axes[0].get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [1, 3])
    with pytest.raises(ValueError, match="no metrics"):
        viz.plot_curves({"epoch": [1, 2]})
    with pytest.raises(ValueError, match="epoch"):
        viz.plot_curves({"epoch": [1, 2], "loss": [1.0]})


# ---------------------------------------------------------------- animation
def test_animate_chain_writes_gif(tmp_path):
    from PIL import Image

    frames = np.random.default_rng(4).random((5, 3, 15))
    path = tmp_path / "anim" / "chain.gif"
    out = viz.animate_chain(frames, shape=(3, 5), path=path, fps=5)
    assert Path(out) == path
    data = path.read_bytes()
    assert data[:6] == b"GIF89a"
    with Image.open(path) as im:
        assert im.n_frames == 5
    assert [p.name for p in path.parent.iterdir()] == ["chain.gif"]


def test_animate_chain_identical_frames_are_kept(tmp_path):
    from PIL import Image

    frames = np.zeros((4, 2, 9))  # a chain stuck in one state
    path = viz.animate_chain(frames, path=tmp_path / "stuck.gif")
    with Image.open(path) as im:
        assert im.n_frames == 4


def test_animate_chain_validates_input():
    with pytest.raises(ValueError, match=r"frames.*\(3, 9\)"):
        viz.animate_chain(np.zeros((3, 9)))
    with pytest.raises(ValueError, match=r"frames.*empty"):
        viz.animate_chain(np.zeros((0, 2, 9)))
