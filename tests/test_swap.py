"""The swap rules on real files: what changes, what must not, hash mode against a real index and pip."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slugslim.core.config import Config, SwapConfig
from slugslim.core.errors import SwapHashError
from slugslim.deps.wheels import NoLookup, PipLookup
from slugslim.prepare.swap import rewrite, swap
from tests.localindex import serve
from tests.wheelfactory import sha256_of, tf_family

pytestmark = pytest.mark.usefixtures("isolated_pip")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    tf_family(out)
    return out


@pytest.fixture(scope="module")
def index(wheelhouse: Path) -> Iterator[str]:
    with serve(wheelhouse) as url:
        yield url


def app(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return tmp_path


def run_prepare(app_dir: Path, config: Config | None = None, env: dict[str, str] | None = None,
                lookup: object = None) -> rewrite.SwapResult:
    return rewrite.prepare(app_dir, config or Config(), env or {}, lookup=NoLookup() if lookup is None else lookup)  # type: ignore[arg-type]


def body(path: Path) -> str:
    """The file without slugslim's header line."""
    lines = path.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    assert lines[0].startswith("# slugslim (Heroku buildpack)")
    return "".join(lines[1:])


@pytest.mark.parametrize(("line", "expected"), [
    ("tensorflow==2.21.0", "tensorflow-cpu==2.21.0"),
    ("TensorFlow[and-cuda]>=2.15,<2.22", "tensorflow-cpu>=2.15,<2.22"),
    ("tensorflow_gpu==2.11.0", "tensorflow-cpu==2.11.0"),
    ("tf-nightly==2.22.0.dev20260101", "tf-nightly-cpu==2.22.0.dev20260101"),
    ('tensorflow ~= 2.21 ; python_version >= "3.10"  # ML', 'tensorflow-cpu ~= 2.21 ; python_version >= "3.10"  # ML'),
])
def test_swap_rules_keep_specifiers_markers_and_comments(tmp_path: Path, line: str, expected: str) -> None:
    app_dir = app(tmp_path, {"requirements.txt": f"flask\n{line}\ngunicorn\n"})
    result = run_prepare(app_dir)
    assert body(app_dir / "requirements.txt") == f"flask\n{expected}\ngunicorn\n"
    assert [s.action for s in result.swaps] == ["swap"]
    assert result.files_changed == ["requirements.txt"]


@pytest.mark.parametrize("raw", [
    b"\xef\xbb\xbf# deps\r\ntensorflow-cpu==2.21.0\r\nflask\r\n",
    b"# not a TensorFlow app: its CUDA pins are its own business\nnvidia-cublas-cu12==12.5.3.2\nflask",
])
def test_a_file_that_needs_no_change_is_left_byte_identical(tmp_path: Path, raw: bytes) -> None:
    app_dir = app(tmp_path, {"requirements.txt": raw})
    result = run_prepare(app_dir)
    assert (app_dir / "requirements.txt").read_bytes() == raw
    assert result.files_changed == []


def test_cuda_pins_are_removed_and_crlf_and_bom_are_kept(tmp_path: Path) -> None:
    raw = (b"\xef\xbb\xbftensorflow[and-cuda]==2.21.0\r\nnvidia-cublas-cu12==12.5.3.2\r\n"
           b"nvidia-cudnn-cu12==9.3.0.75\r\ntensorrt==10.0.1\r\nnvidia-ml-py==12.0\r\n")
    app_dir = app(tmp_path, {"requirements.txt": raw})
    run_prepare(app_dir)
    out = (app_dir / "requirements.txt").read_bytes()
    assert out.startswith(b"\xef\xbb\xbf# slugslim (Heroku buildpack) changed this file")
    assert out.split(b"\r\n", 1)[1] == b"tensorflow-cpu==2.21.0\r\nnvidia-ml-py==12.0\r\n"
    assert out.count(b"\n") == out.count(b"\r\n") == 3


def test_swap_keep_leaves_named_packages(tmp_path: Path) -> None:
    app_dir = app(tmp_path, {"requirements.txt": "tensorflow==2.21.0\nnvidia-cublas-cu12==12.5.3.2\n"
                                                  "nvidia-cudnn-cu12==9.3.0.75\n"})
    config = Config(swap=SwapConfig(keep=("nvidia-cudnn-*",)))
    run_prepare(app_dir, config)
    assert body(app_dir / "requirements.txt") == "tensorflow-cpu==2.21.0\nnvidia-cudnn-cu12==9.3.0.75\n"
    raw = b"tensorflow==2.21.0\n"
    other = app(tmp_path / "other", {"requirements.txt": raw})
    run_prepare(other, Config(swap=SwapConfig(keep=("TensorFlow",))))
    assert (other / "requirements.txt").read_bytes() == raw


def test_swap_false_changes_nothing(tmp_path: Path) -> None:
    raw = b"tensorflow==2.21.0\n"
    app_dir = app(tmp_path, {"requirements.txt": raw})
    result = run_prepare(app_dir, Config(swap=SwapConfig(enabled=False)))
    assert (app_dir / "requirements.txt").read_bytes() == raw
    assert result.to_json()["enabled"] is False


def test_cuda_pins_stay_when_cupy_may_load_them(tmp_path: Path) -> None:
    text = "tensorflow==2.21.0\ncupy-cuda12x==13.3.0\nnvidia-cublas-cu12==12.5.3.2\n"
    app_dir = app(tmp_path, {"requirements.txt": text})
    result = run_prepare(app_dir)
    assert body(app_dir / "requirements.txt") == text.replace("tensorflow==", "tensorflow-cpu==")
    assert [(s.action, s.source) for s in result.swaps] == [
        ("swap", "tensorflow"), ("warn", "cupy-cuda12x"), ("warn", "nvidia-cublas-cu12")]
    assert "no CPU build" in result.swaps[1].reason and "cupy-cuda12x may load it" in result.swaps[2].reason


def test_cuda_pins_stay_when_a_kept_torch_may_load_them(tmp_path: Path) -> None:
    text = "tensorflow==2.21.0\ntorch==2.5.0\nnvidia-cublas-cu12==12.5.3.2\n"
    app_dir = app(tmp_path, {"requirements.txt": text})
    result = run_prepare(app_dir, Config(swap=SwapConfig(keep=("torch",))))
    assert body(app_dir / "requirements.txt") == text.replace("tensorflow==", "tensorflow-cpu==")
    assert [s.action for s in result.swaps] == ["swap", "warn"]


def test_platform_conditional_lines_never_give_two_linux_tensorflows(tmp_path: Path) -> None:
    text = 'tensorflow==2.21.0 ; sys_platform == "darwin"\ntensorflow-cpu==2.21.0 ; sys_platform == "linux"\n'
    app_dir = app(tmp_path, {"requirements.txt": text})
    run_prepare(app_dir)
    assert (app_dir / "requirements.txt").read_text() == text  # the mac line is not for dynos
    text = 'tensorflow==2.21.0 ; sys_platform != "win32"\ntensorflow-cpu==2.21.0 ; sys_platform == "linux"\n'
    app_dir = app(tmp_path / "b", {"requirements.txt": text})
    result = run_prepare(app_dir)
    assert body(app_dir / "requirements.txt") == (
        'tensorflow==2.21.0; sys_platform != "win32" and sys_platform != "linux"\n'
        'tensorflow-cpu==2.21.0 ; sys_platform == "linux"\n')
    assert [s.action for s in result.swaps] == ["exclude-linux"]


def test_markers_are_judged_for_the_apps_python(tmp_path: Path) -> None:
    text = 'tensorflow==2.15.0 ; python_version < "3.12"\ntensorflow==2.21.0 ; python_version >= "3.12"\n'
    app_dir = app(tmp_path, {"requirements.txt": text, ".python-version": "3.11\n"})
    result = run_prepare(app_dir)
    assert result.python_version == "3.11"
    assert body(app_dir / "requirements.txt") == (
        'tensorflow-cpu==2.15.0 ; python_version < "3.12"\ntensorflow==2.21.0 ; python_version >= "3.12"\n')


def test_nested_requirement_and_constraint_files_are_rewritten_in_place(tmp_path: Path) -> None:
    app_dir = app(tmp_path, {
        "requirements.txt": "-r requirements/base.txt\n-c requirements/constraints.txt\nflask\n",
        "requirements/base.txt": "tensorflow[and-cuda]\n",
        "requirements/constraints.txt": "tensorflow==2.21.0\nnvidia-cublas-cu12==12.5.3.2\n",
    })
    result = run_prepare(app_dir)
    assert (app_dir / "requirements.txt").read_text() == (
        "-r requirements/base.txt\n-c requirements/constraints.txt\nflask\n")
    assert body(app_dir / "requirements/base.txt") == "tensorflow-cpu\n"
    assert body(app_dir / "requirements/constraints.txt") == "tensorflow-cpu==2.21.0\n"
    assert sorted(result.files_changed) == ["requirements/base.txt", "requirements/constraints.txt"]


def test_urls_paths_and_editables_are_untouched_with_a_warning(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    text = ("-e git+https://example.invalid/tf.git#egg=tensorflow\n"
            "./wheels/tensorflow-2.21.0-cp311-cp311-manylinux_2_17_x86_64.whl\n"
            "tensorflow @ https://example.invalid/tensorflow-2.21.0-py3-none-any.whl\n")
    app_dir = app(tmp_path, {"requirements.txt": text})
    result = run_prepare(app_dir)
    assert (app_dir / "requirements.txt").read_text() == text
    assert [s.action for s in result.swaps] == ["warn", "warn", "warn"]
    assert capsys.readouterr().err.count("GPU build from a URL, path or -e") == 3


def test_a_transitively_pinned_tensorflow_is_left_for_the_finish_phase(tmp_path: Path) -> None:
    text = "tensorflow==2.21.0\n    # via tf-keras\ntf-keras==2.21.0\n    # via -r requirements.in\n"
    app_dir = app(tmp_path, {"requirements.txt": text})
    result = run_prepare(app_dir)
    assert (app_dir / "requirements.txt").read_text() == text
    assert result.swaps[0].action == "warn" and "tf-keras requires" in result.swaps[0].reason


def test_the_rewrite_is_deterministic(tmp_path: Path) -> None:
    text = "flask\ntensorflow[and-cuda]==2.21.0\nnvidia-cublas-cu12==12.5.3.2\n"
    outputs = set()
    for attempt in range(3):
        app_dir = app(tmp_path / str(attempt), {"requirements.txt": text})
        run_prepare(app_dir)
        outputs.add((app_dir / "requirements.txt").read_bytes())
    assert len(outputs) == 1
    # And running again on the result changes nothing.
    run_prepare(app_dir)
    assert (app_dir / "requirements.txt").read_bytes() in outputs


def test_other_package_managers_are_left_for_the_finish_phase(tmp_path: Path) -> None:
    app_dir = app(tmp_path, {"uv.lock": "version = 1\n", "pyproject.toml": "[project]\nname='x'\n"})
    result = run_prepare(app_dir)
    assert result.manager == "uv" and "uv.lock is not re-locked" in result.notes[0]


def test_plan_swaps_is_a_dry_run(tmp_path: Path) -> None:
    raw = b"tensorflow==2.21.0\n"
    app_dir = app(tmp_path, {"requirements.txt": raw})
    swaps = swap.plan_swaps(app_dir, SwapConfig())
    assert [s.describe() for s in swaps] == ["tensorflow==2.21.0 → tensorflow-cpu==2.21.0 (wheel sizes unknown)"]
    assert (app_dir / "requirements.txt").read_bytes() == raw


# ----------------------------------------------------------------------------------------------
# Hash-checking mode, against a real index on 127.0.0.1 and real pip
# ----------------------------------------------------------------------------------------------

def pip_install(requirements: Path, index: str, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--no-cache-dir", "--index-url", index, "--target", str(target), "-r", str(requirements)],
                          capture_output=True, text=True, check=False)


def test_hash_mode_gets_the_cpu_hash_from_the_index_and_pip_accepts_the_file(
        tmp_path: Path, wheelhouse: Path, index: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    wheels = {p.name.split("-")[0]: p for p in wheelhouse.glob("*.whl")}
    text = (f"tensorflow==2.21.0 \\\n    --hash=sha256:{sha256_of(wheels['tensorflow'])}\n"
            "    # via -r requirements.in\n"
            f"numpy-fake==1.26.4 \\\n    --hash=sha256:{sha256_of(wheels['numpy_fake'])}\n"
            f"nvidia-cublas-cu12==12.5.3.2 \\\n    --hash=sha256:{sha256_of(wheels['nvidia_cublas_cu12'])}\n")
    app_dir = app(tmp_path / "app", {"requirements.txt": text, ".python-version": "3.11\n"})
    monkeypatch.setenv("PIP_INDEX_URL", index)  # where the build's pip looks
    result = rewrite.prepare(app_dir, Config(), {})
    cpu_hash = sha256_of(wheels["tensorflow_cpu"])
    assert body(app_dir / "requirements.txt") == (
        f"tensorflow-cpu==2.21.0 \\\n    --hash=sha256:{cpu_hash}\n    # via -r requirements.in\n"
        f"numpy-fake==1.26.4 \\\n    --hash=sha256:{sha256_of(wheels['numpy_fake'])}\n")
    assert result.hash_mode
    size = wheels["tensorflow"].stat().st_size
    assert f"→ tensorflow-cpu==2.21.0 ({size / 1000:.1f} KB →" in capsys.readouterr().out
    done = pip_install(app_dir / "requirements.txt", index, tmp_path / "target")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "target" / "tensorflow_cpu-2.21.0.dist-info").is_dir()


def test_hash_mode_without_a_hash_fails_clearly_and_writes_nothing(tmp_path: Path, index: str) -> None:
    text = "flask==3.0.0 --hash=sha256:" + "0" * 64 + "\ntensorflow==9.9.9 --hash=sha256:" + "1" * 64 + "\n"
    app_dir = app(tmp_path, {"requirements.txt": text})
    with pytest.raises(SwapHashError) as caught:
        rewrite.prepare(app_dir, Config(), {"PIP_INDEX_URL": index}, lookup=PipLookup("3.11", {"PIP_INDEX_URL": index}))
    message = caught.value.render()
    assert "requirements.txt line 2" in message and "swap: false" in message and "tensorflow-cpu" in message
    assert (app_dir / "requirements.txt").read_text() == text
