"""Dataset loaders: real MNIST / MovieLens 100K when HARMONIUM_DATA points at them (skipped
otherwise), and small files in the official formats built here for everything else: checksum
refusal, truncated files, downloads through a fake fetch, CIFAR-10 pickles (including a malicious
one), MovieLens 1M."""

import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest

from harmonium import datasets as ds
from harmonium.datasets import (
    Dataset, binarize, binarize_stochastic, load_cifar10, load_digits, load_fashion_mnist, load_mnist,
    load_movielens, movielens_titles, train_test_split_ratings, validation_split,
)

IDX = ds._IDX_FILES


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def real_root(*needed: str) -> Path:
    """The real data folder, or skip: HARMONIUM_DATA unset or a needed file missing."""
    env = os.environ.get("HARMONIUM_DATA")
    if not env:
        pytest.skip("HARMONIUM_DATA is not set: real-data tests need the MNIST / MovieLens files")
    root = Path(env)
    missing = [n for n in needed if not (root / n).is_file()]
    if missing:
        pytest.skip(f"real data missing under {root}: {', '.join(missing)}")
    return root


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pin(monkeypatch, subdir: str, name: str, data: bytes, algorithm: str = "sha256") -> None:
    """Make ``data`` the pinned content of ``subdir/name``."""
    monkeypatch.setitem(ds._CHECKSUMS[subdir], name, (algorithm, hashlib.new(algorithm, data).hexdigest()))


def idx_bytes(arr: np.ndarray, *, dims=None, payload=None) -> bytes:
    """A gzipped IDX file of unsigned bytes (header dims and payload can be faked)."""
    arr = np.asarray(arr, dtype=np.uint8)
    dims = arr.shape if dims is None else dims
    raw = struct.pack(">I", 0x0800 | len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    raw += arr.tobytes() if payload is None else payload
    return gzip.compress(raw, mtime=0)


def fake_idx_files(n_train=7, n_test=3, seed=0) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    return {n: idx_bytes(a) for n, a in arrays.items()}, arrays


def write_fake_idx(monkeypatch, folder: Path, subdir="mnist", **kw) -> dict[str, np.ndarray]:
    files, arrays = fake_idx_files(**kw)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
        pin(monkeypatch, subdir, name, data)
    return arrays


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """No test may reach the network: a download that is not faked fails like an offline machine."""
    def offline(url, dest_tmp):
        raise urllib.error.URLError("network disabled in tests")
    monkeypatch.setattr(ds, "_fetch", offline)


# ------------------------------------------------------------------------------------------------
# data folder
# ------------------------------------------------------------------------------------------------


def test_data_home_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("HARMONIUM_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ds.data_home(tmp_path / "arg") == tmp_path / "arg"
    assert ds.data_home() == tmp_path / "env"
    monkeypatch.delenv("HARMONIUM_DATA")
    assert ds.data_home() == tmp_path / "xdg" / "harmonium"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert ds.data_home() == Path.home() / ".cache" / "harmonium"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert ds.data_home() == Path.home() / ".cache" / "harmonium"


def test_env_var_is_used(monkeypatch, tmp_path):
    arrays = write_fake_idx(monkeypatch, tmp_path / "mnist")
    monkeypatch.setenv("HARMONIUM_DATA", str(tmp_path))
    d = load_mnist(download=False)
    assert d.X_train.shape == (7, 784)
    np.testing.assert_array_equal(d.y_test, arrays["t10k-labels-idx1-ubyte.gz"])


# ------------------------------------------------------------------------------------------------
# real data (skipped without HARMONIUM_DATA)
# ------------------------------------------------------------------------------------------------


def test_real_mnist():
    real_root(*(f"mnist/{n}" for n in IDX))
    d = load_mnist(download=False)
    assert isinstance(d, Dataset) and d.name == "mnist" and d.image_shape == (28, 28)
    assert d.X_train.shape == (60000, 784) and d.X_test.shape == (10000, 784)
    assert d.y_train.shape == (60000,) and d.y_test.shape == (10000,)
    assert d.X_train.dtype == np.float32 and d.X_test.dtype == np.float32
    assert d.y_train.dtype == np.int64 and d.y_test.dtype == np.int64
    assert d.X_train.min() == 0.0 and d.X_train.max() == 1.0
    assert 0.0 <= d.X_test.min() and d.X_test.max() <= 1.0
    counts = np.bincount(d.y_train, minlength=10)
    assert counts.sum() == 60000 and len(counts) == 10 and (counts > 0).all()
    assert np.bincount(d.y_test).sum() == 10000
    assert d.y_train[0] == 5
    assert abs(float(d.X_train.mean()) - 0.1307) < 1e-3  # the well-known MNIST pixel mean
    for a in (d.X_train, d.y_train, d.X_test, d.y_test):
        assert not a.flags.writeable
    with pytest.raises(ValueError):
        d.X_train[0, 0] = 1.0
    assert load_mnist(download=False) is d  # parsed once per process


def test_real_mnist_validation_split():
    real_root(*(f"mnist/{n}" for n in IDX))
    d = load_mnist(download=False)
    X_tr, y_tr, X_val, y_val = validation_split(d.X_train, d.y_train)
    assert X_tr.shape == (55000, 784) and X_val.shape == (5000, 784)
    assert y_tr.shape == (55000,) and y_val.shape == (5000,)
    np.testing.assert_array_equal(X_val, d.X_train[55000:])
    np.testing.assert_array_equal(y_tr, d.y_train[:55000])


def test_real_mnist_flipped_byte_refused(tmp_path):
    root = real_root(*(f"mnist/{n}" for n in IDX))
    folder = tmp_path / "mnist"
    folder.mkdir()
    for n in IDX:
        shutil.copyfile(root / "mnist" / n, folder / n)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(target.read_bytes())
    data[100] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError) as e:
        load_mnist(data_dir=tmp_path, download=False)
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg
    assert ds._CHECKSUMS["mnist"]["t10k-labels-idx1-ubyte.gz"][1] in msg
    assert sha256(bytes(data)) in msg
    assert target.exists()  # a user's file is reported, never deleted


def test_real_movielens_100k():
    real_root("ml-100k/u.data", "ml-100k/u1.base", "ml-100k/u1.test")
    train, test = load_movielens("100k", fold=1, download=False)
    assert train.shape == (80000, 3) and test.shape == (20000, 3)
    assert train.dtype == np.int64 and not train.flags.writeable
    everything, empty = load_movielens("100k", fold=None, download=False)
    assert everything.shape == (100000, 3) and empty.shape == (0, 3)
    assert len(np.unique(everything[:, 0])) == 943 and everything[:, 0].min() == 1
    assert everything[:, 0].max() == 943
    assert len(np.unique(everything[:, 1])) == 1682 and everything[:, 1].max() == 1682
    assert set(np.unique(everything[:, 2])) == {1, 2, 3, 4, 5}
    assert everything[0].tolist() == [196, 242, 3]  # first line of u.data


def _sorted_rows(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])]


def test_real_movielens_folds_partition_u_data():
    real_root(*(f"ml-100k/u{k}.{s}" for k in range(1, 6) for s in ("base", "test")), "ml-100k/u.data")
    everything = _sorted_rows(load_movielens(fold=None, download=False)[0])
    tests = []
    for k in range(1, 6):
        base, test = load_movielens(fold=k, download=False)
        np.testing.assert_array_equal(_sorted_rows(np.concatenate([base, test])), everything)
        tests.append(test)
    np.testing.assert_array_equal(_sorted_rows(np.concatenate(tests)), everything)


def test_real_movielens_ua_ub():
    real_root(*(f"ml-100k/u{k}.{s}" for k in "ab" for s in ("base", "test")))
    for fold in ("a", "b"):
        base, test = load_movielens(fold=fold, download=False)
        per_user = np.bincount(test[:, 0])[1:]
        assert len(per_user) == 943 and (per_user == 10).all()
        assert len(base) + len(test) == 100000


def test_real_movielens_titles():
    real_root("ml-100k/u.item")
    titles = movielens_titles("100k", download=False)
    assert titles[1] == "Toy Story (1995)"
    assert len(titles) == 1682 and min(titles) == 1 and max(titles) == 1682
    titles[1] = "changed"
    assert movielens_titles(download=False)[1] == "Toy Story (1995)"  # a fresh dict each call


# ------------------------------------------------------------------------------------------------
# IDX files built here: checksums, truncation, caching
# ------------------------------------------------------------------------------------------------


def test_fake_mnist_values(monkeypatch, tmp_path):
    arrays = write_fake_idx(monkeypatch, tmp_path / "mnist")
    d = load_mnist(data_dir=tmp_path, download=False)
    np.testing.assert_array_equal(d.X_train, arrays["train-images-idx3-ubyte.gz"].reshape(7, 784) / np.float32(255))
    np.testing.assert_array_equal(d.y_train, arrays["train-labels-idx1-ubyte.gz"])
    assert d.X_test.shape == (3, 784) and d.X_train.dtype == np.float32 and d.y_test.dtype == np.int64


def test_fashion_mnist_folder(monkeypatch, tmp_path):
    arrays = write_fake_idx(monkeypatch, tmp_path / "fashion-mnist", subdir="fashion-mnist", n_train=4, seed=1)
    d = load_fashion_mnist(data_dir=tmp_path, download=False)
    assert d.name == "fashion-mnist" and d.label_names[9] == "Ankle boot" and d.X_train.shape == (4, 784)
    np.testing.assert_array_equal(d.y_train, arrays["train-labels-idx1-ubyte.gz"])
    with pytest.raises(OSError, match="mnist"):  # its files are not MNIST's
        load_mnist(data_dir=tmp_path, download=False)


def test_fashion_mnist_checksums_are_the_published_md5s():
    table = ds._CHECKSUMS["fashion-mnist"]
    assert table["train-images-idx3-ubyte.gz"] == ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d")
    assert table["t10k-labels-idx1-ubyte.gz"] == ("md5", "bb300cfdad3c16e7a12a480ee83cd310")
    assert ds._CHECKSUMS["ml-1m"]["ml-1m.zip"] == ("md5", "c4d9eecfca2ab87c1945afe126590906")


def test_checksum_mismatch_refused(monkeypatch, tmp_path):
    write_fake_idx(monkeypatch, tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    expected = ds._CHECKSUMS["mnist"]["train-labels-idx1-ubyte.gz"][1]
    with pytest.raises(ValueError) as e:
        load_mnist(data_dir=tmp_path, download=True)  # even with download allowed: never replaced
    msg = str(e.value)
    assert str(path) in msg and expected in msg and sha256(bytes(data)) in msg
    assert path.read_bytes() == bytes(data)


@pytest.mark.parametrize("damage", ["truncated", "bad_magic", "bad_shape", "truncated_gzip", "not_gzip"])
def test_damaged_idx_refused(monkeypatch, tmp_path, damage):
    write_fake_idx(monkeypatch, tmp_path / "mnist")
    name = "train-images-idx3-ubyte.gz"
    images = np.zeros((7, 28, 28), np.uint8)
    bad = {
        "truncated": idx_bytes(images, payload=images.tobytes()[:-100]),
        "bad_magic": gzip.compress(struct.pack(">IIII", 0x0801, 7, 28, 28) + images.tobytes()),
        "bad_shape": idx_bytes(images.reshape(7, 14, 56)),
        "truncated_gzip": idx_bytes(images)[:-30],
        "not_gzip": b"this is not gzip data at all",
    }[damage]
    (tmp_path / "mnist" / name).write_bytes(bad)
    pin(monkeypatch, "mnist", name, bad)  # the checksum passes: the parser must catch it
    with pytest.raises(ValueError, match=name):
        load_mnist(data_dir=tmp_path, download=False)


def test_label_count_mismatch_refused(monkeypatch, tmp_path):
    write_fake_idx(monkeypatch, tmp_path / "mnist")
    name = "train-labels-idx1-ubyte.gz"
    bad = idx_bytes(np.zeros(6, np.uint8))
    (tmp_path / "mnist" / name).write_bytes(bad)
    pin(monkeypatch, "mnist", name, bad)
    with pytest.raises(ValueError, match="labels"):
        load_mnist(data_dir=tmp_path, download=False)


def test_checksum_computed_once_per_file(monkeypatch, tmp_path):
    write_fake_idx(monkeypatch, tmp_path / "mnist")
    calls = []
    real_digest = ds._file_digest
    monkeypatch.setattr(ds, "_file_digest", lambda p, a: calls.append(Path(p).name) or real_digest(p, a))
    first = load_mnist(data_dir=tmp_path, download=False)
    assert sorted(calls) == sorted(IDX)
    assert load_mnist(data_dir=tmp_path, download=False) is first
    assert len(calls) == 4
    # a file that changes (new mtime) is verified and parsed again
    path = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = load_mnist(data_dir=tmp_path, download=False)
    assert calls[4:] == ["t10k-labels-idx1-ubyte.gz"] and again is not first


def test_failed_check_is_not_cached(monkeypatch, tmp_path):
    arrays = write_fake_idx(monkeypatch, tmp_path / "mnist")
    path = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    good = path.read_bytes()
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ValueError):
        load_mnist(data_dir=tmp_path, download=False)
    with pytest.raises(ValueError):
        load_mnist(data_dir=tmp_path, download=False)
    path.write_bytes(good)
    np.testing.assert_array_equal(load_mnist(data_dir=tmp_path, download=False).y_test,
                                  arrays["t10k-labels-idx1-ubyte.gz"])


# ------------------------------------------------------------------------------------------------
# missing files and downloads (fake fetch)
# ------------------------------------------------------------------------------------------------


def test_missing_without_download(monkeypatch, tmp_path):
    monkeypatch.delenv("HARMONIUM_DATA", raising=False)
    with pytest.raises(OSError) as e:
        load_mnist(data_dir=tmp_path, download=False)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "mnist") in msg
    assert "HARMONIUM_DATA" in msg and "data_dir" in msg
    assert not (tmp_path / "mnist").exists()  # nothing created


def test_missing_names_env_source(monkeypatch, tmp_path):
    monkeypatch.setenv("HARMONIUM_DATA", str(tmp_path))
    with pytest.raises(OSError, match=r"\$HARMONIUM_DATA"):
        load_movielens(fold=2, download=False)


def test_offline_download_fails_with_oserror(tmp_path):
    with pytest.raises(OSError) as e:  # the autouse fixture makes _fetch fail like an offline machine
        load_mnist(data_dir=tmp_path, download=True)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "mnist") in msg
    assert "HARMONIUM_DATA" in msg and "data_dir" in msg and "network disabled" in msg
    assert list((tmp_path / "mnist").iterdir()) == []  # no temporary file left behind


def test_download_good_bytes(monkeypatch, tmp_path):
    files, arrays = fake_idx_files()
    for name, data in files.items():
        pin(monkeypatch, "mnist", name, data)
    fetched = []

    def fake_fetch(url, dest_tmp):
        name = url.rsplit("/", 1)[1]
        assert Path(dest_tmp).parent == tmp_path / "mnist" and Path(dest_tmp).name != name
        fetched.append(url)
        Path(dest_tmp).write_bytes(files[name])

    monkeypatch.setattr(ds, "_fetch", fake_fetch)
    d = load_mnist(data_dir=tmp_path)
    assert sorted(u.rsplit("/", 1)[1] for u in fetched) == sorted(IDX)
    assert all(u.startswith("https://") for u in fetched)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(IDX)  # no temp files
    for name, data in files.items():
        assert (tmp_path / "mnist" / name).read_bytes() == data
    np.testing.assert_array_equal(d.y_train, arrays["train-labels-idx1-ubyte.gz"])
    load_mnist(data_dir=tmp_path)
    assert len(fetched) == 4  # present files are not fetched again


def test_download_bad_bytes(monkeypatch, tmp_path):
    files, _ = fake_idx_files()
    for name, data in files.items():
        pin(monkeypatch, "mnist", name, data)
    monkeypatch.setattr(ds, "_fetch", lambda url, dest_tmp: Path(dest_tmp).write_bytes(b"<html>captive portal</html>"))
    with pytest.raises(ValueError) as e:
        load_mnist(data_dir=tmp_path)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and sha256(b"<html>captive portal</html>") in msg
    assert ds._CHECKSUMS["mnist"]["train-images-idx3-ubyte.gz"][1] in msg
    assert list((tmp_path / "mnist").iterdir()) == []  # neither the final file nor a temporary one


def test_download_falls_back_to_next_mirror(monkeypatch, tmp_path):
    files, _ = fake_idx_files()
    for name, data in files.items():
        pin(monkeypatch, "mnist", name, data)

    def flaky(url, dest_tmp):
        Path(dest_tmp).write_bytes(b"partial")
        if "ossci" in url:
            raise urllib.error.URLError("connection reset")
        Path(dest_tmp).write_bytes(files[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(ds, "_fetch", flaky)
    assert load_mnist(data_dir=tmp_path).X_train.shape == (7, 784)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(IDX)


def test_unwritable_folder_gives_oserror(tmp_path):
    (tmp_path / "mnist").write_text("a file where the folder should be")
    with pytest.raises(OSError, match="HARMONIUM_DATA"):
        load_mnist(data_dir=tmp_path)


# ------------------------------------------------------------------------------------------------
# CIFAR-10 on tiny batches in the official format
# ------------------------------------------------------------------------------------------------

CIFAR_ROWS = {"data_batch_1": 2, "data_batch_2": 3, "data_batch_3": 1, "data_batch_4": 2, "data_batch_5": 2,
              "test_batch": 3}
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_members(seed=0, protocol=2) -> tuple[dict[str, bytes], dict[str, tuple[np.ndarray, list]]]:
    rng = np.random.default_rng(seed)
    members, content = {}, {}
    for name, n in CIFAR_ROWS.items():
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        batch = {"batch_label": f"{name} of 5", "labels": labels, "data": data,
                 "filenames": [f"img_{i}.png" for i in range(n)]}
        members[name] = pickle.dumps(batch, protocol=protocol)
        content[name] = (data, labels)
    members["batches.meta"] = pickle.dumps({"label_names": CIFAR_NAMES, "num_cases_per_batch": 10000,
                                            "num_vis": 3072}, protocol=protocol)
    return members, content


def cifar_tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("cifar-10-batches-py")
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def pin_cifar(monkeypatch, members: dict[str, bytes], tarball: bytes = None) -> None:
    for name, data in members.items():
        pin(monkeypatch, "cifar-10-batches-py", name, data, "md5")
    if tarball is not None:
        pin(monkeypatch, "cifar-10-batches-py", "cifar-10-python.tar.gz", tarball)


def check_cifar(d: Dataset, content) -> None:
    train = [content[f"data_batch_{i}"] for i in range(1, 6)]
    raw = np.concatenate([b[0] for b in train])
    assert d.X_train.shape == (10, 3072) and d.X_test.shape == (3, 3072)
    assert d.X_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert d.image_shape == (32, 32, 3) and d.label_names == tuple(CIFAR_NAMES)
    np.testing.assert_array_equal(d.y_train, sum((b[1] for b in train), []))
    np.testing.assert_array_equal(d.y_test, content["test_batch"][1])
    # channel order: X.reshape(-1, 32, 32, 3)[i, row, col, c] is official byte c*1024 + row*32 + col
    img = d.X_train.reshape(-1, *d.image_shape)
    for i, r, c, ch in [(0, 0, 0, 0), (3, 5, 7, 1), (9, 31, 30, 2)]:
        assert img[i, r, c, ch] == np.float32(raw[i, ch * 1024 + r * 32 + c]) / np.float32(255)
    assert not d.X_train.flags.writeable


def test_cifar10_from_tarball(monkeypatch, tmp_path):
    members, content = cifar_members()
    tarball = cifar_tarball(members)
    pin_cifar(monkeypatch, members, tarball)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(tarball)  # beside the folder, as torchvision keeps it
    d = load_cifar10(data_dir=tmp_path, download=False)
    check_cifar(d, content)
    folder = tmp_path / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(members)  # extracted, nothing else
    (tmp_path / "cifar-10-python.tar.gz").unlink()
    check_cifar(load_cifar10(data_dir=tmp_path, download=False), content)  # from the extracted folder


def test_cifar10_download_and_protocols(monkeypatch, tmp_path):
    members, content = cifar_members(seed=1, protocol=5)
    tarball = cifar_tarball(members)
    pin_cifar(monkeypatch, members, tarball)
    monkeypatch.setattr(ds, "_fetch", lambda url, dest_tmp: Path(dest_tmp).write_bytes(tarball))
    check_cifar(load_cifar10(data_dir=tmp_path), content)
    assert (tmp_path / "cifar-10-batches-py" / "cifar-10-python.tar.gz").read_bytes() == tarball


def test_cifar10_bad_tarball_not_extracted(monkeypatch, tmp_path):
    members, _ = cifar_members()
    tarball = cifar_tarball(members)
    pin_cifar(monkeypatch, members, tarball)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(tarball[:-10])
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz"):
        load_cifar10(data_dir=tmp_path, download=False)
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_cifar10_missing(tmp_path):
    with pytest.raises(OSError) as e:
        load_cifar10(data_dir=tmp_path, download=False)
    assert "cifar-10-python.tar.gz" in str(e.value) and "HARMONIUM_DATA" in str(e.value)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["batch", "nested"])
def test_cifar10_malicious_pickle_refused(monkeypatch, tmp_path, where):
    members, _ = cifar_members()
    marker = tmp_path / "pwned"
    evil = _Evil(marker)
    payload = evil if where == "batch" else {"data": np.zeros((1, 3072), np.uint8), "labels": [evil]}
    members["data_batch_3"] = pickle.dumps(payload, protocol=2)
    assert b"system" in members["data_batch_3"]
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, data in members.items():
        (folder / name).write_bytes(data)
    pin_cifar(monkeypatch, members)  # checksums pass: the unpickler is the last line of defence
    with pytest.raises(ValueError) as e:
        load_cifar10(data_dir=tmp_path, download=False)
    assert "data_batch_3" in str(e.value) and "not allowed" in str(e.value)
    assert not marker.exists()


def test_cifar10_batch_checksum_mismatch(monkeypatch, tmp_path):
    members, _ = cifar_members()
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, data in members.items():
        (folder / name).write_bytes(data)
    pin_cifar(monkeypatch, members)
    (folder / "test_batch").write_bytes(members["test_batch"] + b"x")
    with pytest.raises(ValueError, match="test_batch"):
        load_cifar10(data_dir=tmp_path, download=False)


def test_restricted_unpickler_allows_plain_data():
    obj = {"a": [1, 2.5, "s", b"b", None, True], "x": np.arange(6, dtype=np.uint8).reshape(2, 3)}
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        out = ds._RestrictedUnpickler(io.BytesIO(pickle.dumps(obj, protocol=protocol)), encoding="latin1").load()
        assert out["a"] == obj["a"]
        np.testing.assert_array_equal(out["x"], obj["x"])
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        ds._RestrictedUnpickler(io.BytesIO(pickle.dumps(eval)), encoding="latin1").load()


# ------------------------------------------------------------------------------------------------
# MovieLens on files written here
# ------------------------------------------------------------------------------------------------

ML1M_RATINGS = ("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
                "2::3408::4::978300275\n2::1::2::978299026\n3::1::5::978297867\n")
ML1M_MOVIES = "1::Toy Story (1995)::Animation|Children's|Comedy\n661::James and the Giant Peach (1996)::Animation\n" \
              "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n3408::Erin Brockovich (2000)::Drama\n" \
              "3409::Amélie (2001)::Comedy|Romance\n"


def test_movielens_1m_extracted_folder(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text(ML1M_RATINGS, encoding="latin-1")
    (folder / "movies.dat").write_text(ML1M_MOVIES, encoding="latin-1")
    ratings, test = load_movielens("1m", fold=None, data_dir=tmp_path, download=False)
    assert ratings.dtype == np.int64 and ratings.shape == (6, 3) and test.shape == (0, 3)
    assert ratings.tolist() == [[1, 1193, 5], [1, 661, 3], [2, 1193, 4], [2, 3408, 4], [2, 1, 2], [3, 1, 5]]
    titles = movielens_titles("1m", data_dir=tmp_path, download=False)
    assert titles[1] == "Toy Story (1995)" and titles[3409] == "Amélie (2001)" and len(titles) == 5


def test_movielens_1m_zip(monkeypatch, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", ML1M_RATINGS)
        zf.writestr("ml-1m/movies.dat", ML1M_MOVIES.encode("latin-1"))
    data = buf.getvalue()
    pin(monkeypatch, "ml-1m", "ml-1m.zip", data, "md5")
    monkeypatch.setattr(ds, "_fetch", lambda url, dest_tmp: Path(dest_tmp).write_bytes(data))
    ratings, _ = load_movielens("1m", fold=None, data_dir=tmp_path)  # downloaded
    assert ratings.shape == (6, 3) and ratings[0].tolist() == [1, 1193, 5]
    assert movielens_titles("1m", data_dir=tmp_path)[3409] == "Amélie (2001)"
    assert sorted(p.name for p in (tmp_path / "ml-1m").iterdir()) == ["ml-1m.zip"]  # read, not extracted
    (tmp_path / "ml-1m" / "ml-1m.zip").write_bytes(data + b"\0")  # still a readable zip
    with pytest.raises(ValueError, match="ml-1m.zip"):
        load_movielens("1m", fold=None, data_dir=tmp_path)


@pytest.mark.parametrize("bad, line", [("1::2::5::9\n1::2::x::9\n", "line 2"), ("1::2::5::9\n1::2::6::9\n", "line 2"),
                                       ("1::2::5\n", "4 fields"), ("\n", "no ratings")])
def test_movielens_1m_bad_format(tmp_path, bad, line):
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "ratings.dat").write_text(bad)
    with pytest.raises(ValueError, match="ratings.dat") as e:
        load_movielens("1m", fold=None, data_dir=tmp_path, download=False)
    assert line in str(e.value)


def test_movielens_100k_from_zip(monkeypatch, tmp_path):
    base, test = b"1\t10\t4\t881250949\n2\t10\t5\t881250950\n", b"1\t11\t1\t881250951\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u1.base", base)
        zf.writestr("ml-100k/u1.test", test)
    data = buf.getvalue()
    pin(monkeypatch, "ml-100k", "ml-100k.zip", data, "md5")
    pin(monkeypatch, "ml-100k", "u1.base", base)
    pin(monkeypatch, "ml-100k", "u1.test", test)
    (tmp_path / "ml-100k.zip").write_bytes(data)
    train, tst = load_movielens("100k", fold=1, data_dir=tmp_path, download=False)
    assert train.tolist() == [[1, 10, 4], [2, 10, 5]] and tst.tolist() == [[1, 11, 1]]
    assert sorted(p.name for p in (tmp_path / "ml-100k").iterdir()) == ["u1.base", "u1.test"]


def test_movielens_bad_arguments(tmp_path):
    for variant in ("10m", "", None, 100):
        with pytest.raises(ValueError, match="variant"):
            load_movielens(variant, data_dir=tmp_path, download=False)
    with pytest.raises(ValueError, match="variant"):
        movielens_titles("25m", data_dir=tmp_path)
    for fold in (0, 6, -1, "c", True, 1.5, "u1"):
        with pytest.raises(ValueError, match="fold"):
            load_movielens("100k", fold=fold, data_dir=tmp_path, download=False)
    with pytest.raises(ValueError, match="train_test_split_ratings"):
        load_movielens("1m", fold=1, data_dir=tmp_path, download=False)


def test_train_test_split_ratings():
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(1, 21), rng.integers(1, 40, 20))
    ratings = np.column_stack([users, rng.integers(1, 500, len(users)), rng.integers(1, 6, len(users))])
    train, test = train_test_split_ratings(ratings, test_fraction=0.2, seed=0)
    assert len(train) + len(test) == len(ratings)
    np.testing.assert_array_equal(_sorted_rows(np.concatenate([train, test])), _sorted_rows(ratings))
    for u in np.unique(users):
        n_u = (users == u).sum()
        assert (train[:, 0] == u).sum() >= 1
        assert (test[:, 0] == u).sum() == min(int(np.floor(0.2 * n_u + 0.5)), n_u - 1)
    again = train_test_split_ratings(ratings, test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(again[1], test)
    other = train_test_split_ratings(ratings, test_fraction=0.2, seed=1)
    assert not np.array_equal(other[1], test)
    state = np.random.get_state()[1].copy()
    train_test_split_ratings(ratings)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="test_fraction"):
            train_test_split_ratings(ratings, test_fraction=bad)
    with pytest.raises(ValueError, match="shape"):
        train_test_split_ratings(ratings[:, :2])


# ------------------------------------------------------------------------------------------------
# digits, binarisation, validation split
# ------------------------------------------------------------------------------------------------


def test_load_digits():
    d = load_digits()
    assert d.X_train.shape == (1500, 64) and d.X_test.shape == (297, 64) and d.image_shape == (8, 8)
    assert d.X_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert d.X_train.min() == 0.0 and d.X_train.max() == 1.0
    all_y = np.concatenate([d.y_train, d.y_test])
    frac_train = np.bincount(d.y_train, minlength=10) / np.bincount(all_y, minlength=10)
    assert np.all(np.abs(frac_train - 1500 / 1797) < 0.02)  # stratified
    assert load_digits() is d and not d.X_test.flags.writeable


def test_binarize():
    X = np.array([[0.0, 0.5, 0.51, 1.0]])
    out = binarize(X)
    assert out.dtype == np.float32 and out.tolist() == [[0, 0, 1, 1]]
    assert binarize(X, threshold=0.2).tolist() == [[0, 1, 1, 1]]
    ro = X.copy()
    ro.flags.writeable = False
    assert binarize(ro).flags.writeable


def test_binarize_stochastic():
    P = np.tile(np.array([0.0, 0.1, 0.5, 0.9, 1.0], np.float32), (4000, 1))
    state = np.random.get_state()[1].copy()
    a = binarize_stochastic(P, seed=1)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global state untouched
    assert a.dtype == np.float32 and set(np.unique(a)) <= {0.0, 1.0}
    np.testing.assert_array_equal(a, binarize_stochastic(P, 1))
    assert not np.array_equal(a, binarize_stochastic(P, 2))
    np.testing.assert_array_equal(a, binarize_stochastic(P, np.random.default_rng(1)))
    np.testing.assert_allclose(a.mean(axis=0), [0, 0.1, 0.5, 0.9, 1.0], atol=0.03)
    assert a[:, 0].max() == 0 and a[:, 4].min() == 1
    for bad in ([[1.5]], [[-0.1]], [[np.nan]]):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            binarize_stochastic(np.array(bad), 0)
    with pytest.raises(ValueError, match="seed"):
        binarize_stochastic(P, None)


def test_validation_split():
    X = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    X_tr, y_tr, X_val, y_val = validation_split(X, y, n_val=3)
    np.testing.assert_array_equal(X_val, X[7:])
    np.testing.assert_array_equal(y_tr, y[:7])
    assert X_tr.shape == (7, 2) and y_val.tolist() == [7, 8, 9]
    _, none_tr, X_val2, none_val = validation_split(X, n_val=2)
    assert none_tr is None and none_val is None and X_val2.shape == (2, 2)
    for bad in (0, 10, -1, 2.5, True):
        with pytest.raises(ValueError, match="n_val"):
            validation_split(X, y, n_val=bad)
    with pytest.raises(ValueError, match="rows"):
        validation_split(X, y[:5], n_val=2)


def test_dataset_repr_is_short():
    d = load_digits()
    assert len(repr(d)) < 200 and "digits" in repr(d)
