"""Datasets: MNIST, Fashion-MNIST, CIFAR-10, scikit-learn's 8x8 digits and MovieLens 100K / 1M.

Where the files are
-------------------
Every loader takes ``data_dir``; without it the folder named by the environment variable
``HARMONIUM_DATA`` is used, else the user cache folder ``$XDG_CACHE_HOME/harmonium`` (by default
``~/.cache/harmonium``). Each dataset lives in its own subfolder, named as the official releases
name it::

    <data folder>/mnist/            train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-...
    <data folder>/fashion-mnist/    the same four file names
    <data folder>/cifar-10-batches-py/   data_batch_1..5, test_batch, batches.meta
                                         (or the tarball cifar-10-python.tar.gz)
    <data folder>/ml-100k/          u.data, u1.base, ..., u.item (or the archive ml-100k.zip)
    <data folder>/ml-1m/            ratings.dat, movies.dat (or the archive ml-1m.zip)

An archive (``cifar-10-python.tar.gz``, ``ml-100k.zip``, ``ml-1m.zip``) is looked for in the
dataset's subfolder first, then in the data folder itself; downloads go into the subfolder.

Integrity
---------
Every file is checked against a pinned checksum before it is read: the sha256 of the official file
where a trustworthy one is known, otherwise the md5 the dataset's authors publish (Fashion-MNIST's
README, GroupLens's ``.zip.md5`` files; CIFAR-10's batch files use the md5 values the reference
loaders pin). A mismatch raises :class:`ValueError` naming the file and both digests, and the file
is not used. A successful check is remembered for the rest of the process (keyed by the file's real
path, size, modification time and inode), so repeated loads do not hash again; a file rewritten in
place with the same size within the file system's timestamp resolution is therefore not re-checked
(call :func:`clear_cache` after editing data files by hand).

One exception, documented: GroupLens publishes no per-file checksums for MovieLens 1M, so when
``ml-1m.zip`` is absent and an already extracted ``ml-1m/`` folder is used, only the format of
``ratings.dat`` and ``movies.dat`` is checked. When the zip is present it is verified (md5) and
read directly, without extracting it.

Downloads (``download=True``, the default) fetch a missing file from its canonical location into a
temporary file in the destination folder, verify it, and only then rename it into place, so no
partial or unverified file ever carries the final name. All network access goes through
:func:`_fetch` (urllib only). Without network access the loaders raise :class:`OSError` naming the
missing file, the folder searched and how to provide the data.

Parsed arrays are cached in memory for the process and returned read-only
(``flags.writeable == False``): copy them (``X.copy()``) before modifying them.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import io
import logging
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

__all__ = [
    "Dataset", "data_home", "load_mnist", "load_fashion_mnist", "load_cifar10", "load_digits",
    "load_movielens", "movielens_titles", "train_test_split_ratings", "binarize",
    "binarize_stochastic", "validation_split", "clear_cache", "ENV_VAR",
]

PathLike = Union[str, "os.PathLike[str]"]
Checksum = tuple[str, str]  # (hashlib algorithm name, lowercase hex digest)
_FileKey = tuple[str, int, int, int]  # real path, size, mtime (ns), inode

ENV_VAR = "HARMONIUM_DATA"
_log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Pinned checksums and canonical locations
# --------------------------------------------------------------------------------------------------

_IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TAR = "cifar-10-python.tar.gz"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_MEMBERS = _CIFAR_TRAIN + ("test_batch", "batches.meta")

# _CHECKSUMS[subfolder][file name] = (algorithm, hex digest). Tests replace entries to serve
# files they build themselves.
_CHECKSUMS: dict[str, dict[str, Checksum]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": ("sha256", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train-labels-idx1-ubyte.gz": ("sha256", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "t10k-images-idx3-ubyte.gz": ("sha256", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "t10k-labels-idx1-ubyte.gz": ("sha256", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
    "fashion-mnist": {  # md5 as listed in Zalando Research's README
        "train-images-idx3-ubyte.gz": ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train-labels-idx1-ubyte.gz": ("md5", "25c81989df183df01b3e8a0aad5dffbe"),
        "t10k-images-idx3-ubyte.gz": ("md5", "bef4ecab320f06d8554ea6380940ec79"),
        "t10k-labels-idx1-ubyte.gz": ("md5", "bb300cfdad3c16e7a12a480ee83cd310"),
    },
    _CIFAR_DIR: {
        # The authors list md5 c58f30108f718f92721af3b95e74349a for the tarball; this is its sha256.
        _CIFAR_TAR: ("sha256", "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
        "data_batch_1": ("md5", "c99cafc152244af753f735de768cd75f"),
        "data_batch_2": ("md5", "d4bba439e000b95fd0a9bffe97cbabec"),
        "data_batch_3": ("md5", "54ebc095f3ab1f0389bbae665268c751"),
        "data_batch_4": ("md5", "634d18415352ddfa80567beed471001a"),
        "data_batch_5": ("md5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        "test_batch": ("md5", "40351d587109b95175f43aff81a1287e"),
        "batches.meta": ("md5", "5ff9c542aee3614f3951f8cda6e48888"),
    },
    "ml-100k": {
        "ml-100k.zip": ("md5", "0e33842e24a9c977be4e0107933c0723"),  # GroupLens's ml-100k.zip.md5
        "README": ("sha256", "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52"),
        "u.data": ("sha256", "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"),
        "u.genre": ("sha256", "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb"),
        "u.info": ("sha256", "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b"),
        "u.item": ("sha256", "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701"),
        "u.occupation": ("sha256", "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d"),
        "u.user": ("sha256", "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c"),
        "u1.base": ("sha256", "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a"),
        "u1.test": ("sha256", "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950"),
        "u2.base": ("sha256", "6c06f0b5df4b256da1a994f3ac66edc8da4d3f09bc9282df6b14d893366d703e"),
        "u2.test": ("sha256", "4de658d1e04ed9104629509a2e2528fce833ac8e048280183f1df167632038c3"),
        "u3.base": ("sha256", "afdc155c291c6edc41c0407e39d7462eb98d341e064f0b0a12175b80b3c4af5d"),
        "u3.test": ("sha256", "0f548b51c78327de4c156461d3e430b7e5579fe2b5681586a59416e48fd35f6d"),
        "u4.base": ("sha256", "219f0f4d40dfe9c5141d425f53fa91ee23ed275f14e280bbf1b50117afb064ca"),
        "u4.test": ("sha256", "7c02ad0a1e7ab1083c8b9d4b627203a051dd7b5eab46d99fa44de33470de8db9"),
        "u5.base": ("sha256", "a9574e59ce961eec2121627760b6e9b0974ce1637b3fe69ac32cb14a4bfab485"),
        "u5.test": ("sha256", "351cc52e0d15b6c721466276fc24671d40936899e3d01fadeaf312915b8c5634"),
        "ua.base": ("sha256", "67b5bcdb380c29f85d56a012ecd88612ae020f30a6730d117a334ee8203b91f2"),
        "ua.test": ("sha256", "d0497e202417720f57a184ec8c66be2d1afa4ff41bb53787c57b28d6bf79bc42"),
        "ub.base": ("sha256", "237254d253b6ad7de84f919d041055428646254f34ed8f562703c899430cd881"),
        "ub.test": ("sha256", "d54a72d05730d5892062734b2bec73e976f9b713d18c828a18b968d6cce442da"),
    },
    "ml-1m": {
        "ml-1m.zip": ("md5", "c4d9eecfca2ab87c1945afe126590906"),  # GroupLens's ml-1m.zip.md5
    },
}

_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                  "https://storage.googleapis.com/cvdf-datasets/mnist/",
                  "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
                    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")

# Candidate URLs of every downloadable file, tried in order (the checksum makes mirrors safe).
_URLS: dict[str, dict[str, tuple[str, ...]]] = {
    "mnist": {n: tuple(m + n for m in _MNIST_MIRRORS) for n in _IDX_FILES},
    "fashion-mnist": {n: tuple(m + n for m in _FASHION_MIRRORS) for n in _IDX_FILES},
    _CIFAR_DIR: {_CIFAR_TAR: ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)},
    "ml-100k": {"ml-100k.zip": ("https://files.grouplens.org/datasets/movielens/ml-100k.zip",)},
    "ml-1m": {"ml-1m.zip": ("https://files.grouplens.org/datasets/movielens/ml-1m.zip",)},
}

FASHION_MNIST_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                        "Sneaker", "Bag", "Ankle boot")

# --------------------------------------------------------------------------------------------------
# The dataset container
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset: rows of ``X_*`` are flattened images (float32 in [0, 1]) that
    ``X.reshape(-1, *image_shape)`` turns back into images; ``y_*`` are int64 class labels."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str
    image_shape: tuple[int, ...] = (28, 28)
    label_names: Optional[tuple[str, ...]] = None

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}: train {self.X_train.shape} {self.X_train.dtype}, "
                f"test {self.X_test.shape} {self.X_test.dtype}, image_shape={self.image_shape})")


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


# --------------------------------------------------------------------------------------------------
# Data folder, verification, downloads
# --------------------------------------------------------------------------------------------------


def _resolve_root(data_dir: Optional[PathLike]) -> tuple[Path, str]:
    """(data folder, a phrase saying where it came from) for error messages."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "the data_dir argument"
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), f"${ENV_VAR}"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).expanduser().is_absolute() else Path.home() / ".cache"
    return base / "harmonium", f"the default cache folder (${ENV_VAR} is not set)"


def data_home(data_dir: Optional[PathLike] = None) -> Path:
    """The data folder: ``data_dir``, else ``$HARMONIUM_DATA``, else ``$XDG_CACHE_HOME/harmonium``
    (``~/.cache/harmonium`` when ``XDG_CACHE_HOME`` is unset or not an absolute path)."""
    return _resolve_root(data_dir)[0]


_VERIFIED: set[tuple[Any, ...]] = set()


def _stat_key(path: Path) -> _FileKey:
    """What identifies a version of a file for the caches: real path, size, mtime, inode."""
    st = os.stat(path)
    return os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino


def _file_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def _verify(path: Path, checksum: Checksum, label: Optional[str] = None) -> None:
    """Raise ValueError unless ``path`` has the pinned checksum (cached per path, size, mtime)."""
    algorithm, expected = checksum[0], checksum[1].lower()
    key = (*_stat_key(path), algorithm, expected)
    if key in _VERIFIED:
        return
    actual = _file_digest(path, algorithm)
    if actual != expected:
        raise ValueError(
            f"checksum mismatch for {label or path}: expected {algorithm} {expected}, got {actual}. "
            "The file is corrupt, incomplete or not the official release; it was not used. "
            "Delete it (it is downloaded again with download=True) or replace it with the official file.")
    _VERIFIED.add(key)


def _missing_error(name: str, folder: Path, source: str, alternative: str = "") -> FileNotFoundError:
    alt = f" (nor {alternative})" if alternative else ""
    return FileNotFoundError(
        f"{name} not found in {folder}{alt}; that folder comes from {source}. Provide the data by "
        f"putting the official file there, by setting {ENV_VAR} to a folder whose "
        f"{folder.name}/ subfolder holds it, by passing data_dir=..., or by calling with "
        "download=True on a machine with network access.")


def _fetch(url: str, dest_tmp: Path) -> None:
    """Download ``url`` into the file ``dest_tmp`` (the module's only network access)."""
    request = urllib.request.Request(url, headers={"User-Agent": "harmonium-datasets"})
    with urllib.request.urlopen(request, timeout=60) as response, open(dest_tmp, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


def _download(name: str, folder: Path, subdir: str, source: str) -> Path:
    """Fetch ``name`` into ``folder`` via a verified temporary file; return the final path."""
    checksum, urls = _CHECKSUMS[subdir][name], _URLS[subdir][name]
    dest = folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    except OSError as e:
        raise OSError(f"cannot download {name}: the folder {folder} (from {source}) is not writable "
                      f"({e}). Set {ENV_VAR} or pass data_dir=... to a folder that holds the data "
                      "or where it can be downloaded.") from e
    os.close(fd)
    tmp = Path(tmp_name)
    failures: list[str] = []
    mismatch: Optional[ValueError] = None
    try:
        for url in urls:
            _log.info("downloading %s into %s", url, folder)
            try:
                _fetch(url, tmp)
            except (OSError, http.client.HTTPException, ValueError) as e:  # URLError is an OSError
                failures.append(f"{url}: {e}")
                continue
            try:
                _verify(tmp, checksum, label=f"{dest} (downloaded from {url})")
            except ValueError as e:
                mismatch = mismatch or e
                failures.append(f"{url}: checksum mismatch")
                continue
            os.replace(tmp, dest)
            _VERIFIED.add((*_stat_key(dest), checksum[0], checksum[1].lower()))
            return dest
    finally:
        tmp.unlink(missing_ok=True)
    if mismatch is not None:
        raise mismatch
    raise OSError(f"{name} not found in {folder} (from {source}) and could not be downloaded: "
                  + "; ".join(failures)
                  + f". Without network access, copy the official file there, or set {ENV_VAR} / pass "
                  f"data_dir=... to a folder whose {subdir}/ subfolder holds it.")


def _find_archive(root: Path, subdir: str, name: str) -> Optional[Path]:
    for candidate in (root / subdir / name, root / name):
        if candidate.is_file():
            return candidate
    return None


def _extract(archive: Path, members: dict[str, Path]) -> None:
    """Copy the regular-file members (archive name -> destination) out of a verified zip or tar.gz,
    each through a temporary file renamed into place. Nothing else of the archive is written."""
    def copy(src: Any, dest: Path) -> None:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.replace(tmp_name, dest)
        finally:
            Path(tmp_name).unlink(missing_ok=True)

    for dest in members.values():
        dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for arcname, dest in members.items():
                    info = zf.getinfo(arcname)
                    if info.is_dir():
                        raise ValueError(f"{archive}: member {arcname} is not a regular file")
                    with zf.open(info) as src:
                        copy(src, dest)
        else:
            with tarfile.open(archive, "r:gz") as tf:
                for arcname, dest in members.items():
                    info = tf.getmember(arcname)
                    if not info.isfile():
                        raise ValueError(f"{archive}: member {arcname} is not a regular file")
                    src = tf.extractfile(info)
                    assert src is not None
                    with src:
                        copy(src, dest)
    except KeyError as e:
        raise ValueError(f"{archive} lacks {e}: not the official archive") from e
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as e:
        raise ValueError(f"{archive} cannot be read ({e})") from e
    _log.info("extracted %d files from %s", len(members), archive)


def _dataset_files(root_info: tuple[Path, str], subdir: str, names: tuple[str, ...], download: bool,
                   archive: Optional[str] = None) -> list[Path]:
    """Paths of ``names`` in ``<root>/<subdir>``, each verified; missing files are downloaded
    (one by one) or extracted from the dataset's verified archive (found or downloaded)."""
    root, source = root_info
    folder = root / subdir
    checks = _CHECKSUMS[subdir]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing and archive is None:
        for n in missing:
            if not download:
                raise _missing_error(n, folder, source)
            _download(n, folder, subdir, source)
    elif missing:
        arch = _find_archive(root, subdir, archive)
        if arch is None:
            if not download:
                raise _missing_error(missing[0], folder, source,
                                     alternative=f"the archive {archive} there or in {root}")
            arch = _download(archive, folder, subdir, source)
        else:
            _verify(arch, checks[archive])
        _extract(arch, {f"{subdir}/{n}": folder / n for n in missing})
    paths = [folder / n for n in names]
    for p in paths:
        _verify(p, checks[p.name])
    return paths


# --------------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST (IDX files)
# --------------------------------------------------------------------------------------------------


def _read_idx(path: Path, ndim: int, item_shape: tuple[int, ...] = ()) -> np.ndarray:
    """A gzipped IDX file of unsigned bytes as a uint8 array; ValueError naming the file if the
    magic number, dimensions or length are wrong."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError: report it as bad data
        raise ValueError(f"{path}: not a complete gzip file ({e})") from e
    expected_magic = 0x0800 | ndim
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, the header alone has {header})")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expected_magic:
        raise ValueError(f"{path}: bad IDX magic number 0x{magic:08x} (expected 0x{expected_magic:08x}: "
                         f"unsigned bytes in {ndim} dimension(s))")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if tuple(dims[1:]) != item_shape:
        raise ValueError(f"{path}: IDX dimensions {dims}, expected (n, {', '.join(map(str, item_shape))})"
                         if item_shape else f"{path}: IDX dimensions {dims}")
    n_bytes = int(np.prod(dims))
    if len(raw) - header != n_bytes:
        raise ValueError(f"{path}: truncated or corrupt IDX file: the header announces {dims} "
                         f"({n_bytes} bytes of data), the file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _images_labels(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    X = _read_idx(images, 3, (28, 28))
    y = _read_idx(labels, 1)
    if len(X) != len(y):
        raise ValueError(f"{images} has {len(X)} images but {labels} has {len(y)} labels")
    if y.size and y.max() > 9:
        raise ValueError(f"{labels}: label {int(y.max())} outside 0..9")
    Xf = X.reshape(len(X), -1).astype(np.float32)
    Xf /= np.float32(255)
    return _readonly(Xf), _readonly(y.astype(np.int64))


@functools.lru_cache(maxsize=4)
def _parse_idx_dataset(name: str, keys: tuple[_FileKey, ...],
                       label_names: Optional[tuple[str, ...]]) -> Dataset:
    paths = [Path(k[0]) for k in keys]
    X_train, y_train = _images_labels(paths[0], paths[1])
    X_test, y_test = _images_labels(paths[2], paths[3])
    return Dataset(X_train, y_train, X_test, y_test, name=name, image_shape=(28, 28),
                   label_names=label_names)


def _load_idx_dataset(subdir: str, name: str, data_dir: Optional[PathLike], download: bool,
                      label_names: Optional[tuple[str, ...]] = None) -> Dataset:
    paths = _dataset_files(_resolve_root(data_dir), subdir, _IDX_FILES, download)
    return _parse_idx_dataset(name, tuple(_stat_key(p) for p in paths), label_names)


def load_mnist(data_dir: Optional[PathLike] = None, download: bool = True) -> Dataset:
    """MNIST: 60000 training and 10000 test 28x28 digits, X float32 in [0, 1] (pixel / 255),
    y int64 in 0..9, in the files' order. Arrays are shared and read-only."""
    return _load_idx_dataset("mnist", "mnist", data_dir, download)


def load_fashion_mnist(data_dir: Optional[PathLike] = None, download: bool = True) -> Dataset:
    """Fashion-MNIST (Zalando): same layout as :func:`load_mnist`, from the ``fashion-mnist/``
    folder; ``label_names`` gives the ten clothing classes."""
    return _load_idx_dataset("fashion-mnist", "fashion-mnist", data_dir, download, FASHION_MNIST_LABELS)


# --------------------------------------------------------------------------------------------------
# CIFAR-10 (pickled batches, read with a restricted unpickler)
# --------------------------------------------------------------------------------------------------

_ARRAY_RECONSTRUCT = np.zeros(1).__reduce__()[0]         # numpy's _reconstruct (protocols 0-4)
_ARRAY_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]     # numpy's _frombuffer (protocol 5)
_PICKLE_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _ARRAY_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _ARRAY_RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _ARRAY_FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _ARRAY_FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("_codecs").encode,  # how Python 3 writes bytes at protocol < 3
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, bytes, numbers and numpy arrays; refuses every other global
    (so no pickle can call os.system, eval, subprocess, ...)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed here") from None


def _load_pickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="latin1").load()
    except Exception as e:  # any failure to unpickle is bad data, not a bug of the caller
        raise ValueError(f"{path}: refused or unreadable pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _load_pickle(path)
    data, labels = d.get("data"), d.get("labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3072):
        raise ValueError(f"{path}: 'data' is not a uint8 array of shape (n, 3072)")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: 'labels' is not a list of integers") from e
    if y.shape != (len(data),) or (y.size and (y.min() < 0 or y.max() > 9)):
        raise ValueError(f"{path}: expected {len(data)} labels in 0..9")
    return data, y


def _cifar_rows(data: list[np.ndarray]) -> np.ndarray:
    """Official rows are channel-major (1024 red, 1024 green, 1024 blue, each 32x32 row-major);
    return float32 rows in height x width x RGB order."""
    X = np.concatenate(data)
    X = X.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(len(X), 3072).astype(np.float32)
    X /= np.float32(255)
    return _readonly(X)


@functools.lru_cache(maxsize=2)
def _parse_cifar(keys: tuple[_FileKey, ...]) -> Dataset:
    ordered = [Path(k[0]) for k in keys]  # in the order of _CIFAR_MEMBERS
    train = [_cifar_batch(p) for p in ordered[:5]]
    test = _cifar_batch(ordered[5])
    meta = _load_pickle(ordered[6])
    names = meta.get("label_names")
    if not (isinstance(names, list) and len(names) == 10
            and all(isinstance(n, (str, bytes)) for n in names)):
        raise ValueError(f"{ordered[6]}: 'label_names' is not a list of 10 names")
    return Dataset(
        X_train=_cifar_rows([d for d, _ in train]),
        y_train=_readonly(np.concatenate([y for _, y in train])),
        X_test=_cifar_rows([test[0]]), y_test=_readonly(test[1]),
        name="cifar10", image_shape=(32, 32, 3),
        label_names=tuple(n.decode("latin-1") if isinstance(n, bytes) else n for n in names))


def load_cifar10(data_dir: Optional[PathLike] = None, download: bool = True) -> Dataset:
    """CIFAR-10: 50000 training and 10000 test 32x32 colour images, 10 classes.

    Reads ``cifar-10-batches-py/`` (each batch file checked against its pinned md5) or, where it is
    incomplete, extracts the batches from the verified ``cifar-10-python.tar.gz``. Batches are
    unpickled with a restricted unpickler that only rebuilds dicts, lists, strings and numpy arrays.

    Channel order: each row of ``X`` is the image in height x width x channel order with channels
    R, G, B, i.e. ``X.reshape(-1, 32, 32, 3)`` gives RGB images (the official files store rows
    channel-major; they are transposed here). Values are float32 pixel / 255.
    """
    paths = _dataset_files(_resolve_root(data_dir), _CIFAR_DIR, _CIFAR_MEMBERS, download, archive=_CIFAR_TAR)
    return _parse_cifar(tuple(_stat_key(p) for p in paths))


# --------------------------------------------------------------------------------------------------
# scikit-learn's digits
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _digits() -> Dataset:
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    d = sk_load_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, train_size=1500, test_size=297, stratify=y,
                                              random_state=0)
    return Dataset(*(_readonly(np.ascontiguousarray(a)) for a in (X_tr, y_tr, X_te, y_te)),
                   name="digits", image_shape=(8, 8))


def load_digits() -> Dataset:
    """scikit-learn's bundled 1797 8x8 digits, pixels / 16 as float32 in [0, 1], with a fixed
    stratified split (``train_test_split(..., stratify=y, random_state=0)``): 1500 train, 297 test."""
    return _digits()


# --------------------------------------------------------------------------------------------------
# MovieLens
# --------------------------------------------------------------------------------------------------

_VARIANTS = ("100k", "1m")
_FOLDS_100K = (1, 2, 3, 4, 5, "a", "b", None)


def _check_variant(variant: Any) -> str:
    if not isinstance(variant, str) or variant.lower() not in _VARIANTS:
        raise ValueError(f"unknown MovieLens variant {variant!r}; known variants: {', '.join(_VARIANTS)}")
    return variant.lower()


def _check_fold(variant: str, fold: Any) -> Union[int, str, None]:
    if variant == "1m":
        if fold is not None:
            raise ValueError(f"MovieLens 1M has no official folds (got fold={fold!r}): pass fold=None "
                             "for all ratings and split them with train_test_split_ratings")
        return None
    if isinstance(fold, str):
        fold = fold.lower()
    if isinstance(fold, bool) or fold not in _FOLDS_100K:
        raise ValueError(f"fold must be 1..5 (u1..u5), 'a' or 'b' (ua/ub) or None (all of u.data) "
                         f"for MovieLens 100K, got {fold!r}")
    return fold


def _first_bad_line(text: str, label: str, sep: str) -> ValueError:
    """The error for the first line that is not four integer fields (slow path, errors only)."""
    for i, line in enumerate(text.split("\n"), 1):
        fields = line.split("\t")
        if line.strip() and (len(fields) != 4 or not all(f.strip().isdigit() for f in fields)):
            return ValueError(f"{label}: line {i} is not 'user{sep}item{sep}rating{sep}timestamp' "
                              f"with integer fields: {line.replace(chr(9), sep)[:80]!r}")
    return ValueError(f"{label}: not a MovieLens ratings file")


def _parse_ratings(raw: bytes, label: str, sep: str) -> np.ndarray:
    """(n, 3) int64 user, item, rating from lines 'user<sep>item<sep>rating<sep>timestamp'."""
    text = raw.decode("latin-1").replace("\r\n", "\n")
    if sep != "\t":
        text = text.replace(sep, "\t")
    if not text.strip():
        raise ValueError(f"{label}: no ratings")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = np.loadtxt(io.StringIO(text), delimiter="\t", dtype=np.int64, ndmin=2)
    except ValueError:
        raise _first_bad_line(text, label, sep) from None
    if table.shape[1] != 4:
        raise ValueError(f"{label}: expected 4 fields per line (user, item, rating, timestamp), "
                         f"found {table.shape[1]}")
    r = np.ascontiguousarray(table[:, :3])
    bad = np.flatnonzero((r[:, 0] < 1) | (r[:, 1] < 1) | (r[:, 2] < 1) | (r[:, 2] > 5))
    if bad.size:
        raise ValueError(f"{label}: line {bad[0] + 1} has an id below 1 or a rating outside 1..5: "
                         f"{r[bad[0]].tolist()}")
    return _readonly(r)


@functools.lru_cache(maxsize=16)
def _ratings_from_file(key: _FileKey, sep: str) -> np.ndarray:
    return _parse_ratings(Path(key[0]).read_bytes(), key[0], sep)


@functools.lru_cache(maxsize=4)
def _member_of_zip(key: _FileKey, member: str) -> bytes:
    try:
        with zipfile.ZipFile(key[0]) as zf:
            return zf.read(member)
    except KeyError as e:
        raise ValueError(f"{key[0]} lacks {member}: not the official archive") from e
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise ValueError(f"{key[0]} cannot be read ({e})") from e


@functools.lru_cache(maxsize=4)
def _ratings_from_zip(key: _FileKey, member: str) -> np.ndarray:
    return _parse_ratings(_member_of_zip(key, member), f"{key[0]}:{member}", "::")


def _ml1m_source(root_info: tuple[Path, str], member: str, download: bool) -> tuple[str, _FileKey]:
    """('zip', key of the verified ml-1m.zip) or ('file', key of ml-1m/<member>) (format-checked only)."""
    root, source = root_info
    folder = root / "ml-1m"
    checksum = _CHECKSUMS["ml-1m"]["ml-1m.zip"]
    archive = _find_archive(root, "ml-1m", "ml-1m.zip")
    if archive is not None:
        _verify(archive, checksum)
        return "zip", _stat_key(archive)
    if (folder / member).is_file():
        return "file", _stat_key(folder / member)
    if not download:
        raise _missing_error(member, folder, source, alternative=f"the archive ml-1m.zip there or in {root}")
    return "zip", _stat_key(_download("ml-1m.zip", folder, "ml-1m", source))


def load_movielens(variant: str = "100k", fold: Union[int, str, None] = 1,
                   data_dir: Optional[PathLike] = None, download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MovieLens ratings as ``(train, test)`` int64 arrays of shape (n, 3): user id, item id, rating
    (1-based ids and 1..5 ratings as in the files, rows in file order; read-only, shared).

    ``variant="100k"``: ``fold`` 1..5 reads u<fold>.base / u<fold>.test, "a" / "b" the ua / ub split
    (exactly 10 test ratings per user), None all of u.data with an empty (0, 3) test array.
    ``variant="1m"``: only ``fold=None`` (all of ratings.dat, empty test); split it with
    :func:`train_test_split_ratings`. Its source is ml-1m.zip (md5-verified) when present or
    downloaded, else an extracted ``ml-1m/ratings.dat`` whose format alone is checked (GroupLens
    publishes no per-file checksums).
    """
    variant = _check_variant(variant)
    fold = _check_fold(variant, fold)
    empty = _readonly(np.empty((0, 3), dtype=np.int64))
    root_info = _resolve_root(data_dir)
    if variant == "1m":
        kind, key = _ml1m_source(root_info, "ratings.dat", download)
        ratings = _ratings_from_zip(key, "ml-1m/ratings.dat") if kind == "zip" else _ratings_from_file(key, "::")
        return ratings, empty
    names = ("u.data",) if fold is None else (f"u{fold}.base", f"u{fold}.test")
    paths = _dataset_files(root_info, "ml-100k", names, download, archive="ml-100k.zip")
    arrays = [_ratings_from_file(_stat_key(p), "\t") for p in paths]
    return (arrays[0], empty) if fold is None else (arrays[0], arrays[1])


def _parse_titles(raw: bytes, label: str, sep: str) -> tuple[tuple[int, str], ...]:
    out = []
    for i, line in enumerate(raw.decode("latin-1").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(sep)
        try:
            if len(parts) < 3:
                raise ValueError
            out.append((int(parts[0]), parts[1]))
        except ValueError:
            raise ValueError(f"{label}: line {i} is not 'id{sep}title{sep}...': {line[:80]!r}") from None
    if not out:
        raise ValueError(f"{label}: no movies")
    return tuple(out)


@functools.lru_cache(maxsize=4)
def _titles_cached(kind: str, key: _FileKey, sep: str) -> tuple[tuple[int, str], ...]:
    if kind == "zip":
        return _parse_titles(_member_of_zip(key, "ml-1m/movies.dat"), f"{key[0]}:ml-1m/movies.dat", sep)
    return _parse_titles(Path(key[0]).read_bytes(), key[0], sep)


def movielens_titles(variant: str = "100k", data_dir: Optional[PathLike] = None,
                     download: bool = True) -> dict[int, str]:
    """Movie titles by item id: from u.item (100k, '|'-separated) or movies.dat (1m, '::'),
    both ISO-8859-1. Returns a new dict on each call."""
    variant = _check_variant(variant)
    root_info = _resolve_root(data_dir)
    if variant == "1m":
        kind, key = _ml1m_source(root_info, "movies.dat", download)
        return dict(_titles_cached(kind, key, "::"))
    (path,) = _dataset_files(root_info, "ml-100k", ("u.item",), download, archive="ml-100k.zip")
    return dict(_titles_cached("file", _stat_key(path), "|"))


def train_test_split_ratings(ratings: np.ndarray, test_fraction: float = 0.1,
                             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split rating rows per user: each user's ``round(test_fraction * n_user)`` ratings, drawn
    with ``numpy.random.default_rng(seed)``, go to the test set (at most n_user - 1, so every
    user keeps a training rating). Deterministic for a given input and seed; both outputs keep
    the input's row order. Column 0 must be the user id."""
    r = np.asarray(ratings)
    if r.ndim != 2 or r.shape[1] < 3:
        raise ValueError(f"ratings must have shape (n, 3) or wider (user, item, rating, ...), got {r.shape}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    n = len(r)
    rng = np.random.default_rng(seed)
    users = r[:, 0]
    order = np.lexsort((rng.random(n), users))  # by user, random within a user
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]]) if n else np.zeros(0, int)
    counts = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, counts)
    n_test = np.minimum(np.floor(test_fraction * counts + 0.5).astype(np.int64), counts - 1)
    is_test = np.empty(n, dtype=bool)
    is_test[order] = rank < np.repeat(n_test, counts)
    return r[~is_test], r[is_test]


# --------------------------------------------------------------------------------------------------
# Binarisation and validation split
# --------------------------------------------------------------------------------------------------


def binarize(X: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``X > threshold`` as float32 zeros and ones (a new array)."""
    return (np.asarray(X) > threshold).astype(np.float32)


def binarize_stochastic(X: np.ndarray, seed: Union[int, np.random.Generator]) -> np.ndarray:
    """Independent Bernoulli draws with probabilities ``X`` (values in [0, 1]) as float32 0/1,
    from ``numpy.random.default_rng(seed)`` (or the Generator given): never numpy's global state."""
    if seed is None or isinstance(seed, bool):
        raise ValueError("binarize_stochastic needs a seed (an int or a numpy Generator) so that the "
                         "draws are reproducible")
    P = np.asarray(X, dtype=np.float64)
    if P.size and not (np.all(np.isfinite(P)) and P.min() >= 0.0 and P.max() <= 1.0):
        raise ValueError("binarize_stochastic needs probabilities in [0, 1]")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return (rng.random(P.shape) < P).astype(np.float32)


def validation_split(X: np.ndarray, y: Optional[np.ndarray] = None,
                     n_val: int = 5000) -> tuple[np.ndarray, Optional[np.ndarray], np.ndarray, Optional[np.ndarray]]:
    """``(X_train, y_train, X_val, y_val)``: the LAST ``n_val`` rows become the validation set, the
    rest the training set, without shuffling (for MNIST the customary 55000 + 5000 split). The choice
    is deterministic and independent of any seed; the outputs are views of the inputs."""
    n = len(X)
    if isinstance(n_val, bool) or not isinstance(n_val, (int, np.integer)) or not 0 < n_val < n:
        raise ValueError(f"n_val must be an integer in 1..{n - 1} for {n} rows, got {n_val!r}")
    if y is not None and len(y) != n:
        raise ValueError(f"X has {n} rows but y has {len(y)}")
    cut = n - int(n_val)
    return X[:cut], (None if y is None else y[:cut]), X[cut:], (None if y is None else y[cut:])


def clear_cache() -> None:
    """Forget the verified checksums and the parsed arrays held in memory by this process."""
    _VERIFIED.clear()
    for cached in (_parse_idx_dataset, _parse_cifar, _digits, _ratings_from_file, _member_of_zip,
                   _ratings_from_zip, _titles_cached):
        cached.cache_clear()
