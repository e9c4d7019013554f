"""Run an app through an emulated Heroku classic build, the way Heroku runs buildpacks.

What it reproduces of the real build system:
- a fresh ``build_<id>`` BUILD_DIR holding a copy of the app source, a CACHE_DIR that persists
  between builds of the same app, and an ENV_DIR with one file per config var;
- each buildpack copied to its own directory (as Heroku downloads them), then, in order:
  ``bin/detect BUILD_DIR`` (a failure stops the build), and ``bin/compile BUILD_DIR CACHE_DIR
  ENV_DIR`` run with the previous buildpacks' ``export`` files sourced first;
- the ``bin/release`` of the last buildpack;
- the slug: a gzip (level 6) tar of BUILD_DIR with every path under ``./app``;
- a ``/app`` of its own for each build: every command runs in a private root with a per-build
  directory at ``/app`` (``appdir.at_app``), so heroku/python's ``/app/.heroku/python`` symlink is
  this build's, whatever else runs on the machine, and a host with no ``/app`` needs none.

heroku/python itself is emulated by ``tests/heroku/python-buildpack`` (its header lists what it
reproduces). Build output goes into one log, stdout and stderr interleaved as in a build log.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.heroku.appdir import at_app

REPO = Path(__file__).resolve().parents[2]
SLUGSLIM = REPO
PYTHON_BUILDPACK = Path(__file__).resolve().parent / "python-buildpack"
# The interpreter the emulated heroku/python installs: the one the running venv was made from.
BASE_PYTHON = str(getattr(sys, "_base_executable", sys.executable))
# A stack image's PATH (heroku/heroku:24-build's ENV): what a build finds, besides what buildpacks add.
STACK_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def pip_wheel(tools_wheels: Path) -> Path:
    """pip's wheel among slugslim's tools wheels (lib/tools.lock pins it)."""
    found = sorted(tools_wheels.glob("pip-*.whl"))
    assert found, f"no pip wheel in {tools_wheels}"
    return found[-1]


def pip_for(python: str, tools_wheels: Path) -> dict[str, str]:
    """SLUGSLIM_PIP at the local pip wheel when ``python`` has no pip (Debian's python3, heroku-24's):
    slugslim's bootstrap would download pip's zipapp from the internet otherwise."""
    has_pip = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False).returncode == 0
    return {} if has_pip else {"SLUGSLIM_PIP": str(pip_wheel(tools_wheels))}


def python_runtime(parent: Path, tools_wheels: Path) -> Path:
    """A runtime like heroku/python's made from BASE_PYTHON in ``parent``, for EMULATED_PYTHON_TEMPLATE.

    Its name is keyed by the script, the interpreter and pip, so a cached one is made again when
    any of them changes.
    """
    script, pip = PYTHON_BUILDPACK / "lib/python-runtime.sh", pip_wheel(tools_wheels)
    key = hashlib.sha256(b"\0".join([script.read_bytes(), os.fsencode(BASE_PYTHON), os.fsencode(pip.name)]))
    return made_once(parent / f"python-{key.hexdigest()[:12]}",
                     lambda dest: subprocess.run([str(script), BASE_PYTHON, str(dest), str(pip)], check=True))


def made_once(dest: Path, make: Callable[[Path], object]) -> Path:
    """``dest``, made by ``make`` in a scratch directory beside it and renamed into place: a run cut
    short leaves no half-made ``dest``, and a lock keeps parallel test workers from making it twice."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not dest.is_dir():
            scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent)) / "made"
            make(scratch)
            scratch.rename(dest)
            shutil.rmtree(scratch.parent)
    return dest


@dataclass
class Build:
    returncode: int
    log: str
    build_dir: Path
    cache_dir: Path
    env_dir: Path
    slug_target: Path | None  # where the slug goes; made the first time a test asks for it
    seconds: float
    app_root: Path  # what the build saw as /app
    slug_level: int = 6

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @functools.cached_property
    def slug(self) -> Path | None:
        """The slug, as Heroku makes it after a build that passed. Most tests never look at it, so
        it is made on demand: compressing the build directory is a tenth of the suite's CPU."""
        if self.slug_target is None or not self.ok:
            return None
        slug = make_slug(self.build_dir, self.slug_target, self.slug_level)
        self.log += f"-----> Compressing...\n       Done: {slug.stat().st_size / 1e6:.1f}M\n"
        return slug

    @property
    def slug_bytes(self) -> int:
        return self.slug.stat().st_size if self.slug else 0

    def site_packages(self) -> Path:
        found = sorted((self.build_dir / ".heroku/python/lib").glob("python3.*/site-packages"))
        assert found, f"no site-packages in {self.build_dir}"
        return found[-1]


def _copy_buildpack(source: Path, dest: Path) -> Path:
    """Heroku fetches each buildpack into its own directory; we copy what a buildpack ships."""
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", ".cache", ".git", "tests", "bench")
    for name in ("bin", "lib", "vendor", "requirements", "buildpack.toml"):
        if (source / name).is_dir():
            shutil.copytree(source / name, dest / name, ignore=ignore, symlinks=True)
        elif (source / name).is_file():
            shutil.copy2(source / name, dest / name)
    return dest


HEROKU_GZIP_LEVEL = 6
# Member names and hard-link targets (names in the archive) go under ./app; the S flag leaves
# symlink targets as they are, as Heroku's slugs do (a relative ../../blobs/x stays relative).
SLUG_TRANSFORM = r"s,^\.,./app,S"


def make_slug(build_dir: Path, slug: Path, level: int = HEROKU_GZIP_LEVEL) -> Path:
    """The slug as Heroku makes it: tar.gz (gzip -6) with the app under ./app.

    ``level`` is for tests that only list or unpack the slug: gzip -1 makes the same files in a
    third of the time. Anything that measures the slug's size keeps Heroku's level.
    """
    subprocess.run(
        ["tar", "--create", "--use-compress-program", f"gzip -{level}", "--file", str(slug),
         "--directory", str(build_dir), "--transform", SLUG_TRANSFORM, "."],
        check=True,
    )
    return slug


def run_build(
    app: Path,
    workdir: Path,
    *,
    buildpacks: Sequence[Path] = (SLUGSLIM, PYTHON_BUILDPACK),
    config_vars: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    stack: str = "heroku-24",
    cache_dir: Path | None = None,
    slug: bool = True,
    slug_level: int = HEROKU_GZIP_LEVEL,
    timeout: float = 900,
) -> Build:
    """Build ``app`` in a fresh BUILD_DIR under ``workdir``. Pass the same ``cache_dir`` to rebuild."""
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix="build_", dir=workdir))
    shutil.copytree(app, build_dir, symlinks=True, dirs_exist_ok=True)
    cache_dir = cache_dir or workdir / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    env_dir = Path(tempfile.mkdtemp(prefix="env_", dir=workdir))
    app_root = Path(tempfile.mkdtemp(prefix="slash-app_", dir=workdir))
    for name, value in (config_vars or {}).items():
        (env_dir / name).write_text(value, encoding="utf-8")

    process_env = {**os.environ, "STACK": stack, **(env or {})}
    # A Heroku build has none of these; this machine's may (PYTHONDONTWRITEBYTECODE would keep the
    # build's own Python runs, pip's among them, from writing the bytecode a real build writes).
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE"):
        process_env.pop(name, None)
    log: list[str] = [f"-----> Building on the {stack.capitalize()} stack\n"]
    copies = [_copy_buildpack(bp, Path(tempfile.mkdtemp(prefix="buildpack_", dir=workdir)) / bp.name)
              for bp in buildpacks]

    def run(cmd: list[str], *, capture: bool = False) -> tuple[int, str]:
        done = subprocess.run(at_app(app_root, cmd), cwd=build_dir, env=process_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
        if not capture:
            log.append(done.stdout)
        return done.returncode, done.stdout

    log.append("-----> Using buildpacks:\n")
    log.extend(f"       {n}. {bp.name}\n" for n, bp in enumerate(buildpacks, 1))
    exports: list[Path] = []
    returncode = 0
    for buildpack in copies:
        detected, name = run([str(buildpack / "bin/detect"), str(build_dir)], capture=True)
        if detected != 0:
            log.append(name)
            log.append(f" !     App not compatible with buildpack: {buildpack.name}\n")
            returncode = 1
            break
        log.append(f"-----> {name.strip()} app detected\n")
        sourced = "".join(f'source "{e}"; ' for e in exports)
        returncode, _ = run(["bash", "-c", f'{sourced}exec "$@"', "compile",
                             str(buildpack / "bin/compile"), str(build_dir), str(cache_dir), str(env_dir)])
        if returncode != 0:
            log.append(" !     Push rejected, failed to compile app.\n")
            break
        if (buildpack / "export").is_file():
            exports.append(buildpack / "export")

    if returncode == 0:
        released, release_yaml = run([str(copies[-1] / "bin/release"), str(build_dir)], capture=True)
        if released != 0:
            log.append(release_yaml)
            returncode = released
    return Build(returncode, "".join(log), build_dir, cache_dir, env_dir,
                 workdir / f"{build_dir.name}.tar.gz" if slug else None, time.monotonic() - started, app_root,
                 slug_level)
