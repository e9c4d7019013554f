"""Every failure slugslim can report, and the one place that words them.

Library code raises these classes; ``cli`` turns them into a build-log error with
``render``. Each message says what happened, why, and what to do, for a Heroku user
who has never heard of slugslim.
"""

from __future__ import annotations


class SlugslimError(Exception):
    """Base class. ``title`` is one line; ``detail`` explains why and what to do."""

    title = "slugslim failed"
    # Both phases fail open (``core.failopen``): a step that raises is skipped with a warning and the
    # build goes on. Only what the user has to fix fails it: invalid settings, what the user made
    # strict (verify.strict, models.strict, models.lfs: fail), a Python version heroku/python would
    # reject too, and a pinned Python without a wheel for a framework (pip would fail anyway).
    fails_build = False

    def detail(self) -> str:
        return str(self)

    def render(self) -> str:
        body = self.detail().strip()
        return f"Error: {self.title}.\n\n{body}" if body else f"Error: {self.title}."


class ConfigError(SlugslimError):
    """A problem in slugslim.yml or a SLUGSLIM_* config var."""

    title = "Invalid slugslim configuration"
    fails_build = True

    def __init__(self, source: str, problem: str, fix: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem
        self.fix = fix

    def detail(self) -> str:
        return (
            f"In {self.source}:\n"
            f"{self.problem}\n\n"
            f"{self.fix}\n\n"
            "The full list of settings is in the slugslim README, under 'Configuration'."
        )


class RequirementsError(SlugslimError):
    """A requirements file that pip would reject as well, found while reading it for the swap."""

    title = "Cannot read your requirements file"

    def __init__(self, file: str, line: int, problem: str, fix: str) -> None:
        super().__init__(f"{file} line {line}: {problem}")
        self.file = file
        self.line = line
        self.problem = problem
        self.fix = fix

    def detail(self) -> str:
        return f"In {self.file}, line {self.line}:\n{self.problem}\n\n{self.fix}"


class SwapHashError(SlugslimError):
    """Hash-checking mode, and the hash of the CPU build cannot be had."""

    title = "Cannot switch to the CPU build in a hashed requirements file"

    def __init__(self, file: str, line: int, requirement: str, target: str, why: str) -> None:
        super().__init__(f"{file} line {line}: {why}")
        self.file = file
        self.line = line
        self.requirement = requirement
        self.target = target
        self.why = why

    def detail(self) -> str:
        return (
            f"{self.file} line {self.line} asks for '{self.requirement}' and the file uses --hash, so pip\n"
            f"installs only files whose sha256 the file lists. Heroku dynos have no GPU, so slugslim\n"
            f"replaces it with '{self.target}', which needs that file's hash, but:\n"
            f"{self.why}\n\n"
            "slugslim did not change the file, because pip would reject a file with a wrong or missing hash.\n"
            "Choose one of:\n"
            f"  - commit a lock file that asks for '{self.target}' instead (for example, replace\n"
            f"    tensorflow with tensorflow-cpu in requirements.in and run 'pip-compile --generate-hashes');\n"
            "  - or turn the swap off with 'swap: false' in slugslim.yml (or the config var\n"
            "    SLUGSLIM_SWAP=false) and install the GPU build as written."
        )


class CpuBuildError(SlugslimError):
    """The CPU index is there, but holds no CPU build of the pinned version for the app's Python."""

    title = "No CPU build of a pinned version for your app's Python"

    def __init__(self, file: str, line: int, requirement: str, index: str, python_version: str, why: str) -> None:
        super().__init__(f"{file} line {line}: no CPU build of '{requirement}' for Python {python_version}")
        self.file = file
        self.line = line
        self.requirement = requirement
        self.index = index
        self.python_version = python_version
        self.why = why

    def detail(self) -> str:
        return (
            f"{self.file} line {self.line} asks for '{self.requirement}'. Heroku dynos have no GPU, so slugslim\n"
            f"installs the CPU build from {self.index}, but that index has no CPU build of it for\n"
            f"Python {self.python_version} (the Python your app gets):\n{self.why}\n\n"
            "slugslim did not change the file. Choose one of:\n"
            "  - pin a version that has a CPU build for your Python, or pick the Python that version\n"
            "    supports in .python-version;\n"
            "  - point swap.torch_index in slugslim.yml at an index that has it;\n"
            f"  - or keep the line as written with 'swap: {{keep: [{self.requirement.split('=')[0].strip()}]}}'\n"
            "    in slugslim.yml (the CUDA build is several GB)."
        )


class AnalyzeError(SlugslimError):
    """``slugslim analyze`` was pointed at something it cannot analyse."""

    title = "Cannot analyze this path"

    def __init__(self, path: str, problem: str, fix: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
        self.fix = fix

    def detail(self) -> str:
        return f"{self.path}:\n{self.problem}\n\n{self.fix}"


class PruneGlobError(SlugslimError):
    """A prune.keep or prune.remove glob that does not stay inside site-packages."""

    title = "A prune glob points outside site-packages"
    fails_build = True

    def __init__(self, key: str, glob: str, source: str) -> None:
        super().__init__(f"{key}: {glob}")
        self.key = key
        self.glob = glob
        self.source = source

    def detail(self) -> str:
        return (
            f"In {self.source}, '{self.key}' contains the glob {self.glob!r}.\n"
            "Globs in prune.keep and prune.remove are relative to site-packages "
            "(.heroku/python/lib/pythonX.Y/site-packages), and this one is absolute or climbs out "
            "of it with '..'. slugslim never removes anything outside site-packages.\n\n"
            f"Write the glob relative to site-packages, for example 'tensorflow/include/**', "
            f"or remove it from '{self.key}'."
        )


class VerificationError(SlugslimError):
    """verify.strict is on and the app does not import after pruning, even after bisecting."""

    title = "The app no longer imports after pruning"
    fails_build = True

    def __init__(self, failures: list[str]) -> None:
        super().__init__("; ".join(failures))
        self.failures = failures

    def detail(self) -> str:
        shown = "\n".join(f"  {line}" for line in self.failures[:10])
        return (
            "slugslim removed files from site-packages and then checked that your app's imports "
            "still work. They did not, and leaving out the removals it could blame did not help:\n"
            f"{shown}\n\n"
            "Everything slugslim removed has been put back. Because 'verify.strict' is true in your "
            "slugslim config, the build stops here instead of continuing unpruned.\n"
            "Keep the files your app needs with 'prune.keep' globs in slugslim.yml, turn the rule "
            "named above off (for example 'prune: {tests: false}'), or set 'verify.strict: false' "
            "to let the build continue unpruned."
        )


class ModelStoreError(SlugslimError):
    """models.strict is true and a model could not be put at, or found at, models.source."""

    title = "Models could not be stored at models.source"
    fails_build = True

    def __init__(self, source: str, failures: str) -> None:
        super().__init__(failures)
        self.source = source
        self.failures = failures

    def detail(self) -> str:
        return (
            f"slugslim takes model files out of the slug and fetches them from {self.source} when a\n"
            "dyno starts. These models are not known to be there:\n"
            f"{self.failures}\n\n"
            "Because models.strict is true in slugslim.yml, the build stops instead of shipping them\n"
            "inside the slug. Check that the AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION config\n"
            "vars (and AWS_ENDPOINT_URL for a store other than AWS) can write to that bucket, or that the\n"
            "https:// address accepts PUT. Or set models.strict to false to ship such models in the slug."
        )


class FixupError(SlugslimError):
    """A GPU build was installed and could not be replaced with its CPU build."""

    title = "Could not replace a GPU build with its CPU build"

    def __init__(self, what: str, output: str, framework: str = "TensorFlow", package: str = "tensorflow",
                 cpu_build: str = "tensorflow-cpu") -> None:
        super().__init__(what)
        self.what = what
        self.output = output
        self.framework = framework
        self.package = package
        self.cpu_build = cpu_build

    def detail(self) -> str:
        tail = "\n".join(self.output.strip().splitlines()[-12:])
        return (
            f"{self.what}\n\n"
            + (f"The last output was:\n{tail}\n\n" if tail else "")
            + f"Your app installed the GPU build of {self.framework}, which Heroku dynos cannot use, and slugslim\n"
            "tried to replace it with the CPU build of the same version. slugslim put back what it moved.\n"
            f"Either pin {self.cpu_build} in your dependencies yourself, or keep the GPU build with\n"
            f"'swap: {{keep: [{self.package}]}}' (or 'swap: false') in slugslim.yml."
        )


class BudgetError(SlugslimError):
    """The finish phase used up its time budget (the ``budget`` setting) before a step was done."""

    title = "The time budget for slimming ran out"

    def __init__(self, budget: float) -> None:
        super().__init__(f"budget of {budget:.0f}s used up")
        self.budget = budget

    def detail(self) -> str:
        return (
            f"slugslim may spend {self.budget:.0f} seconds slimming the slug (the 'budget' setting in\n"
            "slugslim.yml, or the SLUGSLIM_BUDGET config var), and they are used up. What this step had changed\n"
            "was put back. Raise 'budget' to give it more time."
        )


class PythonVersionError(SlugslimError):
    """The file that names the app's Python holds something heroku/python would reject too."""

    title = "Cannot read your app's Python version"
    fails_build = True

    def __init__(self, file: str, line: int, found: str, fix: str) -> None:
        super().__init__(f"{file} line {line}: {found}")
        self.file = file
        self.line = line
        self.found = found
        self.fix = fix

    def detail(self) -> str:
        where = f"{self.file} line {self.line}" if self.line else self.file
        return (
            f"In {where}, the Python version is not in a form heroku/python accepts:\n"
            f"{self.found}\n\n"
            f"{self.fix}"
        )


class PreflightError(SlugslimError):
    """The app pins a Python for which a framework it requires has no wheel: pip would fail later."""

    title = "Your app's Python has no wheel for a framework it requires"
    fails_build = True

    def __init__(self, where: str, python: str, name: str, requirement: str, required_at: str,
                 working: list[str], newest_for_python: str, installer: str = "pip") -> None:
        super().__init__(f"{where}: Python {python}; {requirement} ({required_at})")
        self.installer = installer  # pip, or uv or Poetry installing their lock
        self.where = where
        self.python = python
        self.name = name
        self.requirement = requirement
        self.required_at = required_at
        self.working = working
        self.newest_for_python = newest_for_python

    def detail(self) -> str:
        minor = ".".join(self.python.split(".")[:2])
        name = self.name
        failure = ("pip would fail with 'No matching distribution found'" if self.installer == "pip"
                   else f"{self.installer} would find no file of it to install")
        lines = [
            f"{self.where} asks for Python {self.python}, and {self.required_at} asks for",
            f"{self.requirement}, which has no wheel for Python {minor}.",
            f"{failure} after installing Python, so the build stops here.",
            "",
        ]
        if self.working:
            lines.append(f"The Pythons with a wheel for every framework your app requires: {', '.join(self.working)}.")
        lines.append("Choose one of:")
        if self.working:
            lines.append(f"  - change the version in {self.where.split(' line ')[0]} to {self.working[-1]};")
        if self.newest_for_python:
            lines.append(f"  - or require a release that supports Python {minor}: the newest {name} with a wheel "
                         f"for it is {self.newest_for_python}.")
        else:
            lines.append(f"  - or wait for a {name} release with a wheel for Python {minor}.")
        return "\n".join(lines)


class LfsPointerError(SlugslimError):
    """models.lfs is 'fail' and the app has Git LFS pointers where files should be."""

    title = "Your app has Git LFS pointers instead of files"
    fails_build = True

    def __init__(self, paths: list[str], description: str) -> None:
        super().__init__(", ".join(paths))
        self.paths = paths
        self.description = description

    def detail(self) -> str:
        return (f"{self.description}\n\n"
                "The build stops here because models.lfs is 'fail' in your slugslim config; set it to "
                "'warn' to build anyway.")


# Failures a step catches itself and words into its own warning (a lookup that found no wheel, a
# model store that did not answer, LiteRT that could not ship). Their message is the reason, safe
# to print; should one escape, the guard words it as any other.


class LookupFailed(SlugslimError):
    """pip or a package index could not name a wheel; the message says why, in pip's words where possible."""

    title = "A package index lookup failed"


class RelockFailed(SlugslimError):
    """A lock file could not be re-locked for the CPU builds (its locker could not be installed or
    run, an index did not answer, the re-lock would move other packages); the message names the step
    and why. The lock swap puts both files back and warns; the fix-up does the work after the install."""

    title = "The lock file could not be re-locked for the CPU builds"

    def __init__(self, step: str, why: str) -> None:
        super().__init__(f"{step}: {why}")
        self.step = step
        self.why = why


class StoreError(SlugslimError):
    """A request to the model store failed. The message is safe to print: no secrets, no signed URLs."""

    title = "The model store request failed"


class NotShipped(SlugslimError):
    """LiteRT cannot be shipped; the message says why. The app keeps TensorFlow."""

    title = "The models could not be served with LiteRT"
