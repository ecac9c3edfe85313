"""Every bad input gets one line on stderr, exit code 2, no traceback and nothing written.

docs/troubleshooting.md lists these same cases.
"""

import jax
import pytest
from PIL import Image

from data.cifar10 import CLASS_NAMES

CASES = [
    (["mlp-toy", "--steps", "0"], "--steps must be positive"),
    (["mlp-toy", "--batch-size", "-5"], "--batch-size must be positive"),
    (["mlp-toy", "--dataset", "spirals"], "--dataset must be one of"),
    (["mlp-toy", "--framework", "tensorflow"], "--framework must be one of"),
    (["mlp-toy", "--hidden", "20,abc"], "hidden sizes must be comma-separated integers"),
    (["mlp-toy", "--lr", "0"], "--lr must be positive"),
    (["mlp-toy", "--epochs", "3"], "unrecognized arguments"),
    (["mlp-toy", "--batch-size", "30", "--devices", "4"], "does not split over 4 devices"),
    (["mlp-toy", "--devices", "64", "--batch-size", "64"], "local devices"),
    (["mlp-toy", "--checkpoint-every", "-1"], "--checkpoint-every must be >= 0"),
    (["mlp-cifar", "--data", "nowhere"], "unknown data source"),
    (["mlp-cifar", "--data", "folder:/does/not/exist"], "/does/not/exist does not exist"),
    (["mlp-cifar", "--data", "synthetic:0"], "must be a positive integer"),
    (["mlp-cifar", "--precision", "fp8"], "--precision must be one of"),
    (["mlp-cifar", "--limit-train", "-1"], "--limit-train must be >= 0"),
    (["mlp-cifar", "--variant", "huge"], "--variant must be plain or improved"),
    (["mlp-cifar", "--epochs", "-1"], "--epochs must be positive"),
    (["mlp-cifar", "--batch-size", "100", "--devices", "3"], "does not split over 3 devices"),
    (["cnn-cifar", "--data", "synthetic:64", "--batch-size", "512"], "larger than the 64 training images"),
    (["rnn-palindrome", "--input-length", "0"], "--input-length must be positive"),
    (["rnn-palindrome", "--cell", "gru"], "--cell must be one of"),
    (["rnn-palindrome", "--portion-train", "1.5"], "--portion-train must be in (0, 1)"),
    (["rnn-palindrome", "--resume"], "--resume: no checkpoint"),
    (["rnn-sweep", "--lengths", "5,x"], "expected comma-separated integers"),
    (["rnn-sweep", "--seeds", "0"], "--seeds must be positive"),
    (["report", "--parts", "toy,gan"], "unknown report part(s) gan"),
    (["mlp-cifar", "--eval-train", "maybe"], "--eval-train must be true or false"),
    (["rnn-palindrome", "--seed", "-1"], "--seed must be in [0, 4294967295], got -1"),
    (["mlp-toy", "--seed", "9223372036854775808"], "--seed must be in [0, 4294967295]"),
    (["bogus-command"], "invalid choice"),
]


def _assert_one_line_error(r, needle, tmp_path):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert needle in lines[0], lines[0]
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "nothing may be written"


@pytest.mark.parametrize("args,needle", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_flag(cli_fast, tmp_path, args, needle):
    out = tmp_path / "out"
    _assert_one_line_error(cli_fast(*args, "--out", out, "--no-progress"), needle, tmp_path)


def test_bad_flag_exit_code_in_a_real_process(cli, tmp_path):
    """The in-process runner above stands for the command line: check one case end to end."""
    _assert_one_line_error(cli("mlp-toy", "--steps", "0", "--out", tmp_path / "out"), "--steps must be positive",
                           tmp_path)


def test_a_genuine_bug_keeps_its_traceback(cli_fast, tmp_path, monkeypatch):
    """A ValueError that is not a usage error is a bug: it propagates (a traceback, exit code 1), not 'error:'."""
    from train.experiments import rnn

    def broken(*args, **kwargs):
        raise ValueError("an internal bug")
    monkeypatch.setattr(rnn, "train_and_evaluate", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        cli_fast("rnn-palindrome", "--quick", "--out", tmp_path)


def _tree(root, *, truncate=None, classes=CLASS_NAMES):
    for split in ("train", "test"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            Image.new("RGB", (32, 32), (10, 20, 30)).save(d / "0.png")
    if truncate:
        p = root / "train" / truncate / "0.png"
        p.write_bytes(p.read_bytes()[:40])
    return root


@pytest.mark.parametrize("kind,needle", [
    ("truncated", "0.png"),
    ("nine-classes", "needs 10"),
    ("no-test", "test"),
])
def test_bad_image_folder(cli_fast, tmp_path, monkeypatch, kind, needle):
    data = tmp_path / "data"
    if kind == "truncated":
        _tree(data, truncate="cat")
    elif kind == "nine-classes":
        _tree(data, classes=CLASS_NAMES[:9])
    else:
        _tree(data)
        import shutil
        shutil.rmtree(data / "test")
    out = tmp_path / "out"
    # The image cache in this test's folder; the XLA cache, which the CLI also places by this
    # variable, stays the suite's.
    monkeypatch.setenv("JAX_CURRICULUM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", jax.config.jax_compilation_cache_dir or "")
    r = cli_fast("mlp-cifar", "--data", f"folder:{data}", "--epochs", "1", "--out", out, "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(data) in lines[0] and needle in lines[0], r.stderr
    assert not out.exists()


def test_results_folder_not_writable(cli_fast, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    r = cli_fast("mlp-toy", "--steps", "30", "--out", blocker / "results", "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write results to" in lines[0]


def test_resume_with_other_settings_is_refused(cli_fast, tmp_path):
    args = ["rnn-palindrome", "--quick", "--out", tmp_path, "--no-progress"]
    assert cli_fast(*args).returncode == 0
    r = cli_fast(*args, "--lr", "0.5", "--resume")
    assert r.returncode == 2 and "settings differ" in r.stderr and "lr" in r.stderr
