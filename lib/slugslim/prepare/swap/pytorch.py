"""PyTorch in requirements files: ask for the ``+cpu`` builds on PyTorch's CPU index.

On Linux, PyPI's ``torch`` is the CUDA build. The CPU build has the same name and version with a
``+cpu`` local label, on the index in ``swap.torch_index`` (by default the one PyTorch documents). So:

- ``torch==2.13.0`` → ``torch==2.13.0+cpu`` (torchvision and torchaudio likewise); other specifiers
  stay as written, since ``2.13.0+cpu`` sorts above ``2.13.0`` and pip takes it from the extra index.
- ``--extra-index-url <torch_index>`` is added once, before the first changed line, unless a file
  already names that index. It is an *extra* index, so everything else still comes from PyPI.
- Each pinned CPU build is looked up on that index for the app's Python, through pip
  (``slugslim.deps.wheels``): that gives the file's sha256 for hash-checking mode, and torchvision's and
  torchaudio's ``Requires-Dist`` on torch, which must agree with the torch pin.
- Left alone, with a note: ``+cpu`` pins, ``+cu…``/``+rocm…`` pins (a build the user chose), and
  every torch line when ``--index-url`` already is the CPU index.
- An index that does not answer: a warning, the line stays as written (the fix-up after the install
  still replaces a CUDA build). An index that answers without the version: ``CpuBuildError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from slugslim.core import frameworks
from slugslim.core.config import SwapConfig
from slugslim.core.errors import CpuBuildError, LookupFailed, RequirementsError, SwapHashError
from slugslim.deps import reqedit, requirements
from slugslim.deps.simpleindex import index_answers
from slugslim.deps.wheels import Lookup, PipLookup, WheelInfo
from slugslim.prepare.swap.plan import FilePlan, Swap, pinned_version, replace_args, without_marker

TORCH = "torch"


class TorchIndex:
    """PyTorch's CPU index, asked through pip for the app's Python."""

    def __init__(self, url: str, python_version: str, config_vars: Mapping[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.python_version = python_version
        self.lookup: Lookup = PipLookup(python_version, config_vars, ["--index-url", self.url])
        self._reachable: bool | None = None

    def find(self, requirement: str) -> WheelInfo:
        return self.lookup.find(requirement)

    def reachable(self) -> bool:
        """Does the index answer at all (its torch page), as opposed to lacking a version?"""
        if self._reachable is None:
            self._reachable = index_answers(self.url, TORCH)
        return self._reachable


def same_index(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


@dataclass
class TorchRewrite:
    """The torch-family lines of one requirements tree, planned line by line, then checked together."""

    config: SwapConfig
    tree: requirements.Tree
    index: TorchIndex | None  # None: a dry run, nothing is looked up
    app_lookup: Lookup  # the app's own index, for the CUDA build's size
    python_version: str
    gpu_left: list[str] = field(default_factory=list)  # torch-family names that stay CUDA builds
    planned: list[tuple[Swap, requirements.Entry]] = field(default_factory=list)
    _option_added: bool = False

    @property
    def url(self) -> str:
        return self.config.torch_index.rstrip("/")

    def _index_lines(self, option: str) -> bool:
        return any(same_index(o.value or "", self.url) for parsed in self.tree.files for e in parsed.entries
                   for o in e.options if o.name == option)

    def plan(self, file_plan: FilePlan, where: str, index: int, entry: requirements.Entry, hash_mode: bool,
             strip_hashes: bool) -> None:
        assert entry.requirement is not None
        requirement = entry.requirement
        name = canonicalize_name(requirement.name)
        bare = without_marker(requirement)
        pinned = pinned_version(requirement)
        if pinned and "+" in pinned:
            label = pinned.split("+", 1)[1]
            if label != "cpu":
                self.gpu_left.append(name)
            file_plan.swaps.append(Swap(
                file=where, line=entry.lineno, action="note", old=bare, source=name,
                reason="already the CPU build" if label == "cpu" else f"+{label} is the build you chose"))
            return
        if self._index_lines("index-url"):
            file_plan.swaps.append(Swap(file=where, line=entry.lineno, action="note", old=bare, source=name,
                                        reason="--index-url already is PyTorch's CPU index"))
            return
        new_requirement = Requirement(str(requirement))
        if pinned:
            new_requirement.specifier = type(requirement.specifier)(f"=={pinned}+cpu")
        swap = Swap(file=where, line=entry.lineno, action="swap", old=bare, new=without_marker(new_requirement),
                    source=name, target=name, version=f"{pinned}+cpu" if pinned else None)
        if self.index is not None:
            try:
                swap.new_wheel = self.index.find(swap.new)
            except LookupFailed as exc:
                if not self.index.reachable():
                    self.gpu_left.append(name)
                    file_plan.swaps.append(Swap(
                        file=where, line=entry.lineno, action="warn", old=bare, source=name,
                        reason=f"PyTorch's CPU index {self.url} did not answer, so the line keeps asking for "
                               "the CUDA build (the fix-up after the install replaces it)"))
                    return
                raise CpuBuildError(where, entry.lineno, bare, self.url, self.python_version, str(exc)) from exc
            swap.version = swap.new_wheel.version
            try:
                swap.old_wheel = self.app_lookup.find(f"{name}=={swap.version.split('+', 1)[0]}")
            except LookupFailed:
                swap.old_wheel = None
        lines = replace_args(file_plan.parsed, entry, str(new_requirement))
        if strip_hashes:
            lines = reqedit.with_hashes(lines, [])
        elif hash_mode and (entry.hashes or not file_plan.parsed.constraint):
            if swap.new_wheel is None or not swap.new_wheel.sha256:
                raise SwapHashError(where, entry.lineno, entry.args, swap.new,
                                    "slugslim could not get the CPU file's sha256 from PyTorch's CPU index.")
            lines = reqedit.with_hashes(lines, [f"sha256:{swap.new_wheel.sha256}"])
        if not self._option_added and not self._index_lines("extra-index-url"):
            lines = [f"--extra-index-url {self.url}", *lines]
        self._option_added = True
        file_plan.edits[index] = lines
        file_plan.swaps.append(swap)
        self.planned.append((swap, entry))

    def check_pairs(self) -> None:
        """torchvision and torchaudio each require one torch release: the file's torch pin must be it."""
        torch_pin = next(((s, e) for s, e in self.planned if s.source == TORCH and s.version), None)
        if torch_pin is None:
            return
        torch_public = (torch_pin[0].version or "").split("+", 1)[0]
        for swap, entry in self.planned:
            if swap.source == TORCH or swap.new_wheel is None:
                continue
            needed = required_torch(swap.new_wheel.requires)
            if needed is not None and not needed.specifier.contains(torch_public, prereleases=True) \
                    and not needed.specifier.contains(torch_pin[0].version or "", prereleases=True):
                raise RequirementsError(
                    swap.file, entry.lineno,
                    f"'{swap.old}' requires {needed} (its metadata on {self.url}), but {torch_pin[0].file} "
                    f"line {torch_pin[1].lineno} pins torch {torch_public}; pip could not install both.",
                    f"Pin the {swap.source} release made for torch {torch_public}, or the torch release it "
                    "requires.")


def required_torch(requires: tuple[str, ...]) -> Requirement | None:
    for text in requires:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) == TORCH and (requirement.marker is None
                                                             or requirement.marker.evaluate({"extra": ""})):
            return requirement
    return None


def is_torch_family(name: str) -> bool:
    framework = frameworks.framework_of(name)
    return framework is not None and framework.index == frameworks.PYTORCH
