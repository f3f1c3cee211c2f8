"""The ``harmonium`` command line: the rbmcmd session of the small seed, the six-movie example,
the digits demo, data formats, reproducibility and user errors.

End-to-end checks run the installed console script in subprocesses (each pays ~2 s importing torch
and scikit-learn, so there are few of them); the many small error and format cases call
``harmonium.cli.main`` in-process, which is the same code path minus the interpreter start.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import harmonium
from harmonium import cli

SCRIPT = Path(sys.executable).parent / "harmonium"
BASE_CMD = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "harmonium"]
# small models run fastest on one thread, and a busy machine makes extra threads far slower
ENV = {k: v for k, v in os.environ.items() if k != "HARMONIUM_DEBUG"} | {"OMP_NUM_THREADS": "1"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

ROWS = "1 1 1 0 0 0\n1 0 1 0 0 0\n1 1 1 0 0 0\n0 0 1 1 1 0\n0 0 1 1 0 0\n0 0 1 1 1 0\n"
SUBCOMMANDS = ["init", "train", "run-visible", "run-hidden", "daydream", "sample", "transform",
               "reconstruct", "info"]


# ----------------------------------------------------------------------------- helpers
def _argv(args) -> list[str]:
    return [str(a) for a in args]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# processes run at once: starting one is CPU-bound (importing torch), so more than half the CPUs
# only makes each of them slower
PARALLEL = max(1, _cpus() // 2)


def cli_many(*calls: tuple[list, str | None], timeout: float = 180) -> list[subprocess.CompletedProcess]:
    """Run several ``(args, stdin)`` command lines of the installed script, up to PARALLEL at once."""
    from concurrent.futures import ThreadPoolExecutor

    def one(call):
        args, stdin = call
        cmd = list(args) if args and args[0] == sys.executable else BASE_CMD + _argv(args)
        return subprocess.run(cmd, input=stdin or "", capture_output=True, text=True, env=ENV, timeout=timeout)

    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(one, calls))


def cli_run(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return cli_many((list(args), stdin))[0]


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"{r.args} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def rows_of(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def floats_of(text: str) -> np.ndarray:
    return np.array([[float(x) for x in row] for row in rows_of(text)])


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


class Result:
    def __init__(self, rc: int, out: str, err: str) -> None:
        self.returncode, self.stdout, self.stderr = rc, out, err


@pytest.fixture
def run(capsys, monkeypatch):
    """In-process ``main(argv)`` with ``stdin`` text (or bytes) on standard input."""

    def call(*args, stdin: str | bytes = "") -> Result:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        capsys.readouterr()
        rc = cli.main(_argv(args))
        out, err = capsys.readouterr()
        return Result(rc, out, err)

    return call


def _train_in_process(path: Path, seed: int = 0, epochs: int = 1000) -> None:
    with pytest.MonkeyPatch.context() as mp:
        assert cli.main(_argv(["init", path, "--visible", 6, "--hidden", 2, "--learning-rate", 0.1,
                               "--seed", seed])) == 0
        mp.setattr(sys, "stdin", io.StringIO(ROWS))
        assert cli.main(_argv(["train", path, "--epochs", epochs, "--batch-size", 6, "--quiet"])) == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A six-movie model trained in-process (1000 epochs); copy it before modifying it."""
    path = tmp_path_factory.mktemp("trained") / "movies.safetensors"
    _train_in_process(path)
    return path


@pytest.fixture
def model_copy(trained, tmp_path) -> Path:
    dst = tmp_path / "model.safetensors"
    shutil.copy(trained, dst)
    return dst


# ----------------------------------------------------------------------------- end to end
def test_rbmcmd_session(tmp_path):
    """The seed's rbmcmd session: init 6 2 0.1, train on six rows from stdin, run_visible,
    run_hidden, daydream 3 5, daydream_trace 3 (1000 epochs instead of 5000, batch size 6)."""
    model = tmp_path / "rbmstate.safetensors"
    r = ok(cli_run("init", model, "--visible", 6, "--hidden", 2, "--learning-rate", 0.1))
    assert model.is_file() and "6" in r.stdout
    r = ok(cli_run("train", model, "--epochs", 1000, "--batch-size", 6, "--quiet", stdin=ROWS))
    assert "0 -> 1000" in r.stdout

    vis, hid, dream, trace, info = cli_many(
        (["run-visible", model], "0 0 0 1 1 0\n"),
        (["run-hidden", model], "1 0\n"),
        (["daydream", model, 3, 5], None),
        (["daydream", "--trace", model, 3], None),
        (["info", model], None),
    )
    for r in (vis, hid, dream, trace, info):
        ok(r)
        assert r.stderr == ""

    assert re.fullmatch(r"[01] [01]\n", vis.stdout), vis.stdout
    assert re.fullmatch(r"[01]( [01]){5}\n", hid.stdout), hid.stdout

    dreams = rows_of(dream.stdout)
    assert len(dreams) == 5 and all(len(row) == 6 for row in dreams)
    assert {x for row in dreams for x in row} <= {"0", "1"}

    steps = rows_of(trace.stdout)
    assert len(steps) == 4 and all(len(row) == 6 for row in steps)
    start = np.array([float(x) for x in steps[0]])
    assert ((start >= 0) & (start <= 1)).all()
    assert {x for row in steps[1:] for x in row} <= {"0", "1"}

    assert "epochs trained: 1000" in info.stdout
    assert "6 bernoulli units" in info.stdout and "2 bernoulli units" in info.stdout
    assert "learning_rate: 0.1" in info.stdout and "batch_size: 6" in info.stdout


def test_six_movies_hidden_units_separate_the_tastes(run, tmp_path):
    """The seed's meaning: the sf/fantasy fan and the oscar fan activate different hidden units
    (probabilities differing by > 0.5 in some unit), for at least 4 of 5 seeds."""
    separated = []
    for seed in range(5):
        path = tmp_path / f"movies{seed}.safetensors"
        assert run("init", path, "--visible", 6, "--hidden", 2, "--learning-rate", 0.1,
                   "--seed", seed).returncode == 0
        assert run("train", path, "--epochs", 1000, "--batch-size", 6, "--quiet", stdin=ROWS).returncode == 0
        r = run("run-visible", "--mean", path, stdin="1 1 1 0 0 0\n0 0 1 1 1 0\n")
        assert r.returncode == 0, r.stderr
        h = floats_of(r.stdout)
        assert h.shape == (2, 2) and ((h >= 0) & (h <= 1)).all()
        separated.append(bool(np.abs(h[0] - h[1]).max() > 0.5))
    assert sum(separated) >= 4, separated


def test_digits_demo(tmp_path):
    out = tmp_path / "demo"
    r = ok(cli_run("train", "--epochs", 2, "--quiet", "--out", out))
    assert "wrote:" in r.stdout and "Traceback" not in r.stderr
    for name in ("filters.png", "samples.png", "reconstructions.png", "curves.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
        assert str(out / name) in r.stdout
    model = harmonium.load(out / "model.safetensors")
    assert model.n_features_in_ == 64 and model.n_hidden == 64
    assert model.components_.shape == (64, 64)
    history = json.loads((out / "metrics.json").read_text())
    assert history["epoch"] == [1, 2]
    assert len(history["train_reconstruction_error"]) == 2
    assert any(k.startswith("val_") for k in history)


def test_errors_in_real_processes(tmp_path, trained):
    """Exit statuses and messages as a shell sees them, through the console script and through
    ``python -m harmonium`` (the other error cases are tested in-process)."""
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    calls = [
        ([sys.executable, "-m", "harmonium", "run-visible", junk], "1 0 1 0 0 0\n"),
        (["run-visible", trained], "1 0 1 0 0 0\n1 0 x 0 0 0\n"),
    ]
    corrupt, nan = cli_many(*calls)
    for r in (corrupt, nan):
        assert r.returncode == 2, (r.args, r.stderr)
        assert r.stderr.startswith("harmonium: error:"), r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
    assert "junk.safetensors" in corrupt.stderr
    assert "line 2, column 3" in nan.stderr


# ----------------------------------------------------------------------------- help
@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_of_every_subcommand(run, command):
    r = run(command, "--help")
    assert r.returncode == 0
    assert r.stdout.startswith(f"usage: harmonium {command}")


def test_top_level_help_and_usage_errors(run):
    r = run("--help")
    assert r.returncode == 0 and all(c in r.stdout for c in SUBCOMMANDS) and "rbmcmd" in r.stdout
    assert run("--version").stdout.strip() == f"harmonium {harmonium.__version__}"
    r = run()
    assert r.returncode == 2 and "required" in r.stderr
    r = run("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = run("daydream", "model", "-1")
    assert r.returncode == 2 and "STEPS" in r.stderr


# ----------------------------------------------------------------------------- user errors
def _errors_cases(tmp: Path, model: Path) -> dict[str, tuple[list, str, str]]:
    """name -> (argv, stdin, expected fragment of the message)."""
    empty = tmp / "empty.safetensors"
    empty.write_bytes(b"")
    junk = tmp / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(1).bytes(2048))
    truncated = tmp / "truncated.safetensors"
    raw = model.read_bytes()
    truncated.write_bytes(raw[: len(raw) // 2])
    notes = tmp / "notes.txt"
    notes.write_text("1 0 1 0 0 0\n\n1 0 1 one 0 0\n")
    return {
        "missing model": (["run-visible", tmp / "nope.safetensors"], "1 0 1 0 0 0\n", "no model file"),
        "empty model": (["info", empty], "", "empty.safetensors"),
        "random bytes": (["info", junk], "", "junk.safetensors"),
        "truncated model": (["run-visible", truncated], "1 0 1 0 0 0\n", "truncated.safetensors"),
        "model is a folder": (["info", tmp], "", "no model file"),
        "ragged rows": (["run-visible", model], "1 0 1 0 0 0\n1 0 1 0 0\n", "line 2: expected 6 values, got 5"),
        "non-number": (["run-visible", model], "1 0 1 0 0 0\n1 0 x 0 0 0\n", "line 2, column 3"),
        "non-number in a file": (["transform", model, notes], "", "line 3, column 4: 'one'"),
        "3.0 for a Bernoulli unit": (["run-visible", model], "1 0 1 0 0 0\n0 0 3.0 0 0 0\n",
                                     "line 2 of stdin has values outside the support of Bernoulli"),
        "wrong number of columns": (["run-visible", model], "1 0 1 0 0\n", "5 values per row"),
        "wrong hidden columns": (["run-hidden", model], "1 0 1\n", "model has 2 hidden units"),
        "no rows": (["transform", model], "\n\n", "no data rows"),
        "missing data file": (["transform", model, tmp / "nope.txt"], "", "no data file"),
        "training data columns": (["train", model, "--epochs", 1], "1 0 1\n", "3 values per row"),
        "train without epochs": (["train", model], ROWS, "--epochs is required"),
        "unknown dataset": (["train", "--dataset", "mnist"], "", "known datasets: digits"),
        "init over a file": (["init", model, "--visible", 2, "--hidden", 2], "", "--force"),
        "bad hyperparameter": (["init", tmp / "m.safetensors", "--visible", 2, "--hidden", 2,
                                "--momentum", 1.5], "", "momentum"),
        "trace of several dreams": (["daydream", "--trace", model, 3, 2], "", "--trace"),
        "npz key": (["transform", model, tmp / "d.npz", "--key", "nope"], "", "no array named 'nope'"),
        "1-D npy": (["transform", model, tmp / "d1.npy"], "", "2-D array"),
    }


ERROR_NAMES = ["missing model", "empty model", "random bytes", "truncated model", "model is a folder",
               "ragged rows", "non-number", "non-number in a file", "3.0 for a Bernoulli unit",
               "wrong number of columns", "wrong hidden columns", "no rows", "missing data file",
               "training data columns", "train without epochs", "unknown dataset", "init over a file",
               "bad hyperparameter", "trace of several dreams", "npz key", "1-D npy"]


@pytest.mark.parametrize("name", ERROR_NAMES)
def test_user_errors_exit_2_with_a_message(run, tmp_path, model_copy, name):
    np.savez(tmp_path / "d.npz", a=np.zeros((2, 6)))
    np.save(tmp_path / "d1.npy", np.zeros(6))
    before = model_copy.read_bytes()
    args, stdin, fragment = _errors_cases(tmp_path, model_copy)[name]
    r = run(*args, stdin=stdin)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("harmonium: error:"), r.stderr
    assert "Traceback" not in r.stderr
    assert fragment in r.stderr, r.stderr
    assert model_copy.read_bytes() == before  # a failed command never touches the model


def test_error_cases_are_all_parametrized(tmp_path, trained):
    assert sorted(ERROR_NAMES) == sorted(_errors_cases(tmp_path, trained))


def test_internal_errors_exit_1_and_debug_shows_traceback(run, monkeypatch, trained):
    def boom(args):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cli, "cmd_info", boom)
    r = run("info", trained)
    assert r.returncode == 1
    assert "internal error: RuntimeError: kaboom" in r.stderr and "Traceback" not in r.stderr
    monkeypatch.setenv("HARMONIUM_DEBUG", "1")
    with pytest.raises(RuntimeError, match="kaboom"):
        cli.main(["info", str(trained)])


# ----------------------------------------------------------------------------- data and outputs
def test_data_formats_give_the_same_rows(run, tmp_path, trained):
    X = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 0], [1, 0, 1, 0, 0, 0]], dtype=float)
    np.save(tmp_path / "x.npy", X)
    np.savez(tmp_path / "x.npz", other=np.zeros((1, 3)), rows=X)
    (tmp_path / "x.csv").write_text("hp,avatar,lotr,gladiator,titanic,glitter\n"
                                    + "".join(",".join(str(int(v)) for v in row) + "\n" for row in X))
    (tmp_path / "x.txt").write_text("# six movies\n" + "\n".join(" ".join(f"{v:g}" for v in row) for row in X)
                                    + "\n\n")
    expected = harmonium.load(trained).transform(X)
    buf = io.BytesIO()
    np.save(buf, X)
    outputs = [
        run("transform", trained, tmp_path / "x.npy"),
        run("transform", trained, tmp_path / "x.npz", "--key", "rows"),
        run("transform", trained, tmp_path / "x.csv"),
        run("transform", trained, tmp_path / "x.txt"),
        run("transform", trained, stdin="1,1,1,0,0,0\n0, 0, 1, 1, 1, 0\n1\t0 1 0 0 0\n"),
        run("transform", trained, "-", stdin=buf.getvalue()),  # .npy bytes on stdin
    ]
    for r in outputs:
        assert r.returncode == 0, r.stderr
        np.testing.assert_allclose(floats_of(r.stdout), expected, rtol=1e-5, atol=1e-6)


def test_outputs_are_reproducible_with_seed(run, trained):
    for args, stdin in ((["daydream", trained, 5, 4], ""), (["sample", trained, 3, "--steps", 20], ""),
                        (["run-visible", trained], ROWS), (["run-hidden", trained], "1 0\n0 1\n")):
        a = run(*args, "--seed", 7, stdin=stdin)
        b = run(*args, "--seed", 7, stdin=stdin)
        assert a.returncode == 0 and a.stdout == b.stdout and a.stdout
    # sample rows: N rows of 0/1 states; --mean: probabilities
    r = run("sample", trained, 3, "--steps", 20, "--seed", 1)
    assert len(rows_of(r.stdout)) == 3 and {x for row in rows_of(r.stdout) for x in row} <= {"0", "1"}
    p = floats_of(run("sample", trained, 3, "--steps", 20, "--mean").stdout)
    assert p.shape == (3, 6) and ((p >= 0) & (p <= 1)).all()


def test_mean_outputs_and_reconstruct(run, trained):
    hv = floats_of(run("run-hidden", "--mean", trained, stdin="1 0\n0 1\n").stdout)
    assert hv.shape == (2, 6) and ((hv >= 0) & (hv <= 1)).all()
    rec = floats_of(run("reconstruct", trained, stdin="1 1 1 0 0 0\n").stdout)
    assert rec.shape == (1, 6)
    model = harmonium.load(trained)
    np.testing.assert_allclose(rec, model.reconstruct(np.array([[1, 1, 1, 0, 0, 0.0]])), rtol=1e-5, atol=1e-6)


def test_training_resumes_and_counts_epochs(run, model_copy):
    r = run("train", model_copy, "--epochs", 5, "--quiet", "--seed", 3, stdin=ROWS)
    assert r.returncode == 0, r.stderr
    assert "1000 -> 1005" in r.stdout
    info = json.loads(run("info", "--json", model_copy).stdout)
    assert info["epochs_trained"] == 1005
    assert info["visible"]["n"] == 6 and info["hidden"]["n"] == 2
    assert info["hyperparameters"]["learning_rate"] == pytest.approx(0.1)
    assert info["hyperparameters"]["batch_size"] == 6
    assert info["last_metrics"]["train_reconstruction_error"]["epoch"] == 1005
    # options may follow the positionals (argparse alone refuses that for optional positionals)
    (model_copy.parent / "rows.txt").write_text(ROWS)
    r = run("train", model_copy, "--epochs", 1, model_copy.parent / "rows.txt", "-q")
    assert r.returncode == 0, r.stderr
    assert run("train", model_copy, "--epochs", 1, "--out", "x", stdin=ROWS).returncode == 2
    assert run("train", model_copy, "--epochs", 1, "--hidden", 3, stdin=ROWS).returncode == 2


def test_init_options(run, tmp_path):
    path = tmp_path / "soft.safetensors"
    r = run("init", path, "--visible", 6, "--hidden", 3, "--visible-units", "softmax", "--group-size", 3,
            "--hidden-units", "multinomial", "--dtype", "float64", "--persistent", "--k", 2, "--seed", 4)
    assert r.returncode == 0, r.stderr
    model = harmonium.load(path)
    assert model.dtype == "float64" and model.persistent and model.k == 2 and model.random_state == 4
    assert model.model_.visible.name == "softmax" and model.model_.hidden.name == "multinomial"
    W = np.random.default_rng(4).normal(0, 0.01, (6, 3))
    np.testing.assert_allclose(model.model_.W.detach().numpy(), W)
    assert not model.intercept_visible_.any() and not model.intercept_hidden_.any()
    # softmax rows: one unit on per group of 3
    r = run("run-visible", path, stdin="1 0 0 0 1 0\n")
    assert r.returncode == 0, r.stderr
    r = run("run-visible", path, stdin="1 1 0 0 1 0\n")
    assert r.returncode == 2 and "line 1 of stdin" in r.stderr
    assert run("init", tmp_path / "b.safetensors", "--visible", 4, "--hidden", 2,
               "--group-size", 2).returncode == 2


def test_centred_and_averaged_models_from_the_command_line(run, tmp_path):
    path = tmp_path / "c.safetensors"
    r = run("init", path, "--visible", 6, "--hidden", 3, "--persistent", "--centering", "--ema-decay", 0.9)
    assert r.returncode == 0, r.stderr
    model = harmonium.load(path)
    assert model.centering and model.ema_decay == 0.9 and not model.model_.centered  # offsets: at the first epoch
    r = run("train", path, "--epochs", 2, "-q", stdin=ROWS)
    assert r.returncode == 0, r.stderr
    model = harmonium.load(path)
    average = model._trainer().average  # the saved training state, as a resumed fit would have it
    assert model.model_.centered and average is not None and average.updates == 2  # 6 rows, batches of 10
    # the override switches the average off; a bad value is refused before anything is written
    saved = path.read_bytes()
    r = run("train", path, "--epochs", 1, "-q", "--ema-decay", 1.5, stdin=ROWS)
    assert r.returncode == 2 and "ema_decay must be" in r.stderr and path.read_bytes() == saved
    r = run("train", path, "--epochs", 1, "-q", "--ema-decay", 0, stdin=ROWS)
    assert r.returncode == 0, r.stderr
    model = harmonium.load(path)
    assert model.ema_decay == 0.0 and model._trainer().average is None


def test_format_rows():
    assert cli.format_rows(np.array([[1.0, 0.0], [-0.0, 1.0]])) == "1 0\n0 1\n"
    assert cli.format_rows(np.array([[0.5, 1.0]])) == "0.5 1\n"
    assert cli.format_rows(np.array([[1.0, 0.0]]), probabilities=True) == "1 0\n"
    assert cli.format_rows(np.array([0.123456789, 2.0]), probabilities=True) == "0.123457 2\n"
    assert cli.format_rows(np.array([[3.0, 2.0]])) == "3 2\n"  # multinomial counts


def test_a_dbn_model_file_is_refused_with_a_pointer_to_python(run, tmp_path):
    X = (np.random.default_rng(0).random((11, 7)) < 0.5).astype(np.float32)
    path = harmonium.DBN(n_hidden=(5, 3), rbm_params={"epochs": 1}, random_state=0).fit(X).save(tmp_path / "dbn.safetensors")
    for command in (["info", path], ["transform", path], ["sample", path, 2]):
        r = run(*command)
        assert r.returncode == 2 and "holds a DBN" in r.stderr and "harmonium.load" in r.stderr, (command, r.stderr)
