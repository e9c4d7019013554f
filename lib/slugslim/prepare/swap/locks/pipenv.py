"""Pipenv: ``Pipfile`` and ``Pipfile.lock``, re-locked with ``pipenv lock`` at heroku/python's Pipenv version.

The edit is the one Pipenv's documentation gives for taking a package from one index:

- a source, ``[[source]] name = "pytorch-cpu"``, ``url = swap.torch_index``, ``verify_ssl``, appended
  after the app's own (the first one stays the default index);
- ``torch = {version = "==2.13.0", index = "pytorch-cpu"}`` in ``[packages]`` (torchvision,
  torchaudio likewise), at the locked public version; a torch package that came in through another
  package is added so;
- TensorFlow: ``tensorflow`` becomes ``tensorflow-cpu == <its locked version>`` (the ``and-cuda``
  extra goes). Pipenv has no override: a ``tensorflow`` that only another package requires stays
  in the lock, and the fix-up replaces it after the install.

``pipenv lock`` resolves every package again: a package the Pipfile does not pin moves to the
newest release its constraints allow, whatever the old lock said. So a re-lock keeps everything
else only when the Pipfile pins it or nothing newer came out; otherwise the flow's comparison
names what would move and puts both files back. Pipfile.lock (JSON) records, per category
(``default``, ``develop``), each package's ``==version``, the sha256 of its files, its markers,
and the source name (``index``) of the packages the Pipfile names; ``_meta.hash`` is the sha256 of
the Pipfile's sources, requires and packages, which ``pipenv install --deploy`` compares with the
Pipfile's and refuses the lock when they differ. The lock records no dependency graph: a torch
package's ``requires`` here are the CUDA wheels locked beside it (a torch next to them is their GPU
build), any other package's are unknown (none).

Pipenv resolves in a virtualenv it makes for the project (under ``WORKON_HOME``) with the stack's
python3, evaluating markers for the Pipfile's ``[requires] python_version`` when it names one
(else for that python3). Its HOME, virtualenv and virtualenv's app data are a temporary directory,
its download cache is kept in the build cache; ``PIPENV_VENV_IN_PROJECT=0`` and
``PIPENV_IGNORE_VIRTUALENVS`` keep it away from a ``.venv`` in the app and from any active
virtualenv, ``PIPENV_DONT_LOAD_ENV`` from the app's ``.env``; nothing but Pipfile.lock is
written in the app. Of the app's config vars, heroku/python v351 hands ``PIP_EXTRA_INDEX_URL`` to
``pipenv install`` (``lib/pipenv.sh``), and so does the re-lock; ``pipenv lock`` resolves from the
Pipfile's sources only, so it does not change the lock.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from slugslim.core import frameworks, pip
from slugslim.deps import locked, lockers, tomlfile
from slugslim.deps.tomledit import TomlEditError
from slugslim.prepare.swap.locks import _manifest
from slugslim.prepare.swap.locks.model import Locked, ManifestChange, Relock, by_name
from slugslim.prepare.swap.pytorch import is_torch_family, same_index

PACKAGES = ("packages",)
SOURCES = ("source",)


class PipenvAdapter:
    manager = "pipenv"
    manifest = "Pipfile"
    lock = "Pipfile.lock"
    overrides = False

    def read_lock(self, text: str) -> dict[str, Locked]:
        packages = locked.loads(self.lock, text).packages
        cuda = frozenset(p.name for p in packages if frameworks.is_cuda_runtime(p.name))
        return by_name(packages, lambda p: cuda if is_torch_family(p.name) else frozenset())

    def direct(self, manifest_text: str) -> frozenset[str]:
        packages = tomlfile.loads(manifest_text).get("packages", {})
        return frozenset(str(canonicalize_name(k)) for k in (packages if isinstance(packages, dict) else {}))

    def edit(self, manifest_text: str, change: ManifestChange) -> str:
        text = manifest_text
        if change.torch:
            secure = change.index_url.startswith("https://")
            text = _manifest.source(text, SOURCES, change.index_name, change.index_url, {"verify_ssl": secure})
        for torch in change.torch:
            text = _manifest.pin(text, PACKAGES, torch.name, {"version": f"=={torch.version}",
                                                               "index": change.index_name})
        for renamed in change.renamed:
            if not renamed.direct:
                raise TomlEditError(f"{renamed.gpu} comes in through another package, and Pipenv cannot replace it")
            text = _manifest.rename(text, PACKAGES, renamed.gpu, renamed.cpu, f"=={renamed.version}",
                                    _manifest.cuda_extras(renamed.gpu))
        _check(text, change)
        return text

    def relock(self, run: Relock) -> None:
        with tempfile.TemporaryDirectory(prefix="slugslim-pipenv-") as scratch:
            home = Path(scratch)
            env = pip.environment(run.config_vars, tools=())
            for name in ("VIRTUAL_ENV", "PIPENV_PIPFILE", "PIPENV_VENV_IN_PROJECT", "PIPENV_ACTIVE"):
                env.pop(name, None)
            env.update(run.locker.env)
            env.update({"HOME": str(home), "PIPENV_CACHE_DIR": str(run.cache_dir), "WORKON_HOME": str(home / "venvs"),
                        "PIPENV_PYTHON": run.locker.python, "PIPENV_VENV_IN_PROJECT": "0",
                        "PIPENV_IGNORE_VIRTUALENVS": "1", "PIPENV_DONT_LOAD_ENV": "1", "PIPENV_NOSPIN": "1",
                        "PIPENV_VERBOSITY": "-1", "PIPENV_YES": "1", "VIRTUALENV_NO_SEED": "1",
                        "VIRTUALENV_NO_PERIODIC_UPDATE": "1", "VIRTUALENV_OVERRIDE_APP_DATA": str(home / "virtualenv"),
                        "LANG": env.get("LANG") or "C.UTF-8"})
            lockers.run(run.locker, [*run.locker.command, "lock"], run.app_dir, env, run.timeout)


ADAPTER = PipenvAdapter()


def _check(text: str, change: ManifestChange) -> None:
    """The edited Pipfile parses and says what was meant, or a TomlEditError."""
    try:
        data = tomlfile.loads(text)
    except tomlfile.TomlError as exc:
        raise TomlEditError(f"the edit would not parse: {exc}") from exc
    packages: dict[str, Any] = {str(canonicalize_name(k)): v for k, v in data.get("packages", {}).items()}
    sources = [s for s in data.get("source", []) if isinstance(s, dict) and s.get("name") == change.index_name]
    ok = not change.torch or (len(sources) == 1 and same_index(str(sources[0].get("url", "")), change.index_url))
    ok = ok and all(isinstance(packages.get(p.name), dict) and packages[p.name].get("index") == change.index_name
                    and packages[p.name].get("version") == f"=={p.version}" for p in change.torch)
    ok = ok and all(r.cpu in packages and r.gpu not in packages for r in change.renamed)
    if not ok:
        raise TomlEditError("the edit did not come out as meant")
