"""scan -> plan -> apply into the quarantine -> verify -> commit, or roll back and bisect.

Nothing is deleted before the app's imports pass on the pruned tree. When they fail, every
item goes back byte-identical, the engine bisects over rule groups and then over package
groups to find what broke which import, re-applies the rest and verifies again.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slugslim import boot_check, imports, installed, log, verify
from slugslim.config import Config, PruneConfig
from slugslim.errors import BudgetError, VerificationError
from slugslim.plan import Plan, Removal
from slugslim.prune import bytecode, headers, packages, quarantine, symbols, tests, user
from slugslim.prune.globs import GlobSet
from slugslim.prune.rule import Rule
from slugslim.prune.tree import SiteTree, scan

# Order matters only for credit: when two rules plan the same path, the earlier one gets it.
RULE_ORDER = (packages.NAME, user.NAME, tests.NAME, headers.NAME, bytecode.NAME, symbols.NAME)
PROTECTED_SUFFIXES = (".dist-info",)
PROTECTED_NAMES = frozenset({"_vendor"})
MAX_BISECT_RUNS = 16


def rules(source: str = "slugslim.yml") -> list[Rule]:
    return [packages.PackagesRule(), user.UserRule(source), tests.TestsRule(), headers.HeadersRule(),
            bytecode.BytecodeRule(), symbols.SymbolsRule()]


def _protected(path: str) -> bool:
    return any(part.endswith(PROTECTED_SUFFIXES) or part in PROTECTED_NAMES for part in path.split("/"))


def _companions(tree: SiteTree, removals: list[Removal]) -> list[Removal]:
    """The __pycache__ entries of single modules other rules remove."""
    out = []
    for r in removals:
        if r.rule == symbols.NAME or not r.path.endswith(".py") or r.path in tree.dirs:
            continue
        directory, _, name = r.path.rpartition("/")
        cache = f"{directory}/__pycache__" if directory else "__pycache__"
        stem = name[:-3]
        for child in tree.children.get(cache, []):
            if child.split(".", 1)[0] == stem and child.endswith(".pyc"):
                path = f"{cache}/{child}"
                out.append(Removal(path, tree.files.get(path, 0), r.rule, f"bytecode of a removed module ({r.reason})",
                                   1, r.package))
    return out


def _guard(tree: SiteTree, removals: list[Removal], keep: GlobSet) -> tuple[list[Removal], int]:
    """Drop what prune.keep or a protected path covers; split directories that hold such things."""
    held: set[str] = set()  # kept/protected paths
    for path in [*tree.dirs, *tree.files]:
        if _protected(path) or (keep and keep.matches(path)):
            held.add(path)
    ancestors = {"/".join(p.split("/")[:i]) for p in held for i in range(1, p.count("/") + 1)}

    def covered(path: str) -> bool:
        if path.startswith("../"):
            return False
        parts = path.split("/")
        return any("/".join(parts[:i]) in held for i in range(1, len(parts) + 1)) or _protected(path)

    out: list[Removal] = []
    dropped = 0

    def split(r: Removal, directory: str) -> None:
        for child in sorted(tree.children.get(directory, [])):
            path = f"{directory}/{child}"
            if path in held:
                continue
            if path in ancestors and path in tree.dirs:
                split(r, path)
                continue
            size, files = tree.size(path)
            out.append(Removal(path, size, r.rule, r.reason, files, tree.owner(path) or r.package))

    for r in removals:
        if covered(r.path):
            dropped += 1
        elif r.path in ancestors and r.path in tree.dirs and r.rule != symbols.NAME:
            split(r, r.path)
        else:
            out.append(r)
    return out, dropped


def _dedupe(removals: list[Removal]) -> list[Removal]:
    """One removal per path; nothing under a directory that is already removed; moves beat strips."""
    rank = {name: i for i, name in enumerate(RULE_ORDER)}
    ordered = sorted(removals, key=lambda r: (r.path.split("/"), r.rule == symbols.NAME, rank.get(r.rule, 99)))
    taken: set[str] = set()
    out = []
    for r in ordered:
        parts = r.path.split("/")
        if any("/".join(parts[:i]) in taken for i in range(1, len(parts) + 1)):
            continue
        taken.add(r.path)
        out.append(r)
    return out


def plan_tree(tree: SiteTree, config: PruneConfig, source: str = "slugslim.yml",
              active: list[Rule] | None = None) -> Plan:
    keep = GlobSet.of("prune.keep", config.keep, source)
    planned: list[Removal] = []
    for rule in active if active is not None else rules(source):
        planned.extend(rule.plan(tree, config))
    planned.extend(_companions(tree, planned))
    guarded, _dropped = _guard(tree, planned, keep)
    return Plan(root=str(tree.root), removals=_dedupe(guarded))


# Runs in the app's interpreter: load each shared object with ctypes, one line per result,
# so a crash still tells which file did it.
_LOADER = r"""
import ctypes, sys
for index, path in enumerate(sys.argv[1:]):
    print("BEGIN", index, flush=True)
    try:
        ctypes.CDLL(path)
        print("OK", index, flush=True)
    except OSError as exc:
        print("ERR", index, str(exc).replace("\n", " ")[:300], flush=True)
"""


def load_check(python: Path | str, env: Mapping[str, str], paths: list[Path], timeout: float = 300) -> dict[Path, str]:
    """Which shared objects fail to load, with why. A crash blames the file being loaded."""
    failures: dict[Path, str] = {}
    remaining = list(paths)
    while remaining:
        try:
            proc = subprocess.run([str(python), "-c", _LOADER, *map(str, remaining)], env=dict(env),
                                  capture_output=True, text=True, errors="replace", timeout=timeout)
            lines, code = proc.stdout.splitlines(), proc.returncode
        except subprocess.TimeoutExpired as exc:
            raw = exc.stdout or b""
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            lines, code = text.splitlines(), -9
        last = -1
        for line in lines:
            word, _, rest = line.partition(" ")
            index_text, _, message = rest.partition(" ")
            if not index_text.isdigit():
                continue
            index = int(index_text)
            last = max(last, index)
            if word == "ERR":
                failures[remaining[index]] = message
            elif word == "OK":
                last = max(last, index)
        finished = {int(line.split(" ")[1]) for line in lines if line.startswith(("OK ", "ERR "))}
        if code == 0 and len(finished) == len(remaining):
            break
        crashed = next((i for i in range(len(remaining)) if i not in finished), None)
        if crashed is None:
            break
        failures[remaining[crashed]] = f"loading it crashed the interpreter (exit status {code})"
        remaining = remaining[crashed + 1 :]
    return failures


@dataclass
class PruneResult:
    status: str  # pruned | partial | unpruned | skipped | dry-run
    plan: Plan
    removed: dict[str, int] = field(default_factory=dict)  # rule -> bytes actually saved
    files: dict[str, int] = field(default_factory=dict)  # rule -> files removed
    culprits: list[dict[str, Any]] = field(default_factory=list)
    strip_rolled_back: dict[str, str] = field(default_factory=dict)
    strip_skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    verify_runs: int = 0
    verified_modules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    recovered: int = 0

    @property
    def bytes(self) -> int:
        return sum(self.removed.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "bytes": self.bytes,
            "removed": self.removed,
            "files": self.files,
            "planned": self.plan.by_rule(),
            "culprits": self.culprits,
            "strip_rolled_back": self.strip_rolled_back,
            "strip_skipped": len(self.strip_skipped),
            "failed": self.failed,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "verify_runs": self.verify_runs,
            "verified_modules": self.verified_modules,
            "notes": self.notes,
            "recovered": self.recovered,
            "removals": [r.to_json() for r in self.plan.removals],
        }


def quarantine_location(anchor: Path, site_packages: Path) -> Path:
    """A sibling of ``anchor`` (BUILD_DIR, or a virtualenv) on the same filesystem as site-packages."""
    preferred = anchor.parent / f".slugslim-quarantine-{anchor.name}"
    try:
        if os.stat(anchor.parent).st_dev == os.stat(site_packages).st_dev and os.access(anchor.parent, os.W_OK):
            return preferred
    except OSError:
        pass
    # A mount point as BUILD_DIR: stay on its filesystem, next to site-packages' prefix.
    return site_packages.parent / ".slugslim-quarantine"


@dataclass
class Engine:
    site_packages: Path
    config: Config
    python: Path | str
    env: Mapping[str, str]
    cwd: Path
    quarantine_dir: Path
    app_dir: Path | None = None
    source: str = "slugslim.yml"
    config_vars: Mapping[str, str] = field(default_factory=dict)  # the app's, for the boot check
    say: Callable[[str], None] = log.detail
    warn: Callable[[str], None] = log.warning
    # time.monotonic() at which the finish phase's budget runs out: no verification may run past it
    deadline: float = math.inf
    _baseline: verify.Outcome | None = field(default=None, init=False)
    _command: str = field(default="", init=False)
    _web: boot_check.WebCheck | None = field(default=None, init=False)  # set when the web process booted

    def dry_run(self, imported: frozenset[str] | None = None) -> PruneResult:
        started = time.monotonic()
        tree = scan(self.site_packages)
        tree.imported_bytecode = imported
        scanned = time.monotonic()
        active = rules(self.source)
        plan = plan_tree(tree, self.config.prune, self.source, active)
        result = PruneResult("dry-run", plan, timings={"scan": scanned - started, "plan": time.monotonic() - scanned})
        result.strip_skipped = _strip_skips(active)
        return result

    def run(self) -> PruneResult:
        prune_cfg, verify_cfg = self.config.prune, self.config.verify
        timings: dict[str, float] = {}
        recovered = quarantine.recover(self.quarantine_dir)
        quarantine.empty_trash(self.quarantine_dir)
        if recovered:
            self.say(f"Put back {recovered} items an interrupted earlier run had set aside")

        modules: list[str] = []
        baseline: verify.Outcome | None = None
        command = verify_cfg.command
        tree_started = time.monotonic()
        tree = scan(self.site_packages)
        timings["scan"] = time.monotonic() - tree_started
        if verify_cfg.enabled:
            scripts = installed.console_scripts(self.site_packages)
            found = imports.scan_app(self.app_dir, scripts) if self.app_dir else imports.Found()
            modules, maybe = verify.targets(found, tree.top_level_modules(), verify_cfg.imports)
            baseline = self._verify(modules, command, maybe=maybe)
            timings["verify_before"] = baseline.seconds
            broken = sorted(baseline.failures)
            if broken:
                self.warn("Warning: Some of your app's imports fail even before slugslim prunes anything.\n"
                          + "\n".join(f"import {m}: {baseline.failures[m]}" for m in broken[:5])
                          + "\nslugslim leaves them out of its check; fix them in your app or its requirements.")
            # From here on, `from x import y` counts as the module x.y only where it was one.
            modules = sorted({m for m in modules if m not in baseline.failures} | set(baseline.found))
            shown = sorted(m for m in modules if not any(o.startswith(f"{m}.") for o in modules))
            self.say(f"Checked imports before pruning ({log.seconds(baseline.seconds)}): "
                     + (", ".join(shown) if shown else "no installed module is imported by the app"))
            if baseline.command_failure:
                self.warn("Warning: verify.command fails even before pruning:\n"
                          f"{baseline.command_failure}\nslugslim will not use it to check the pruned tree.")
                command = ""
            if verify_cfg.boot != "false" and self.app_dir is not None:
                web = boot_check.WebCheck(self.cwd, self.config_vars, self.site_packages,
                                          self._timeout(verify_cfg.boot_timeout),
                                          verify_cfg.paths, self.say)
                timings["boot_before"] = web.before(self.app_dir, baseline)
                self._web = web if web.command else None
            if prune_cfg.bytecode != "drop":
                self._refresh_bytecode(baseline)
            tree.imported_bytecode = baseline.bytecode(self.site_packages)
            if modules and not baseline.modules:
                # Imports passed but none came from this site-packages: dropping bytecode
                # on that evidence would drop it all, so keep it instead.
                tree.imported_bytecode = None
                self.say("The imports did not load anything from this site-packages; keeping all bytecode")
            self._baseline, self._command = baseline, command
        elif prune_cfg.bytecode in ("imported", "distributions"):
            self.say(f"verify is off, so no bytecode is dropped (prune.bytecode: {prune_cfg.bytecode} needs an "
                     "import run)")

        plan_started = time.monotonic()
        active = rules(self.source)
        plan = plan_tree(tree, prune_cfg, self.source, active)
        timings["plan"] = time.monotonic() - plan_started
        result = PruneResult("pruned", plan, timings=timings, verified_modules=modules, recovered=recovered)
        result.strip_skipped = _strip_skips(active)
        if prune_cfg.symbols and symbols.strip_tool() is None:
            result.notes.append("strip (binutils) is not on PATH, so symbol tables were left in place")
            self.say("Notice: strip (binutils) is not on PATH; skipping the symbols rule")
        if not plan.removals:
            result.status = "pruned"
            self.say("Nothing to prune")
            return result
        self._log_plan(plan)
        if os.environ.get("SLUGSLIM_DEBUG"):
            for r in plan.removals[:50]:
                self.say(f"  {r.rule}: {r.path} ({r.reason})")

        box = quarantine.Quarantine(self.quarantine_dir, self.site_packages, symbols.strip_tool())
        try:
            return self._apply_and_verify(box, plan, result, modules, command, baseline)
        except BaseException:
            # Never leave the tree half-pruned: anything still set aside goes back.
            quarantine.recover(self.quarantine_dir)
            raise

    def _timeout(self, limit: float) -> float:
        """``limit``, or what is left of the budget. BudgetError when none is (run() then rolls back)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BudgetError(self.config.budget)
        return min(limit, left)

    def _refresh_bytecode(self, baseline: verify.Outcome) -> None:
        """Recompile the stale or missing .pyc of modules the app imports.

        A cache restored without timestamps (heroku/python copies without --link across
        filesystems) leaves every .pyc stale; the interpreter would then recompile them at every
        dyno boot. Writing them now makes them valid, so the imported policy keeps them.
        """
        root = os.path.realpath(self.site_packages) + os.sep
        stale = sorted(source for source, _cached, good in baseline.modules.values()
                       if not good and source.startswith(root))
        if not stale:
            return
        code = ("import py_compile, sys\n"
                "for s in sys.argv[1:]:\n"
                "    try:\n"
                "        py_compile.compile(s, doraise=True)\n"
                "        print(s)\n"
                "    except Exception:\n"
                "        pass\n")
        env = {k: v for k, v in self.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        proc = subprocess.run([str(self.python), "-c", code, *stale], env=env, capture_output=True, text=True,
                              errors="replace", check=False, timeout=self._timeout(self.config.verify.timeout))
        compiled = set(proc.stdout.splitlines())
        refreshed = 0
        for name, (source, cached, good) in list(baseline.modules.items()):
            if not good and source in compiled and cached:
                baseline.modules[name] = (source, cached, True)
                refreshed += 1
        if refreshed:
            self.say(f"Refreshed the stale bytecode of {refreshed} imported modules")

    def _verify(self, modules: list[str], command: str, baseline: verify.Outcome | None = None,
                maybe: list[str] | None = None) -> verify.Outcome:
        outcome = verify.run(self.python, self.env, self.cwd, modules, self.site_packages, command,
                             self._timeout(self.config.verify.timeout), maybe or ())
        if self._web is not None and outcome.ok:
            self._web.timeout = self._timeout(self.config.verify.boot_timeout)
            self._web.after(outcome)
        if not outcome.ok and time.monotonic() >= self.deadline:
            raise BudgetError(self.config.budget)  # it failed because the time ran out: blame no rule
        if baseline is not None and self.config.prune.bytecode != "drop":
            for name, (_source, _cached, good) in baseline.modules.items():
                now = outcome.modules.get(name)
                if good and now is not None and not now[2]:
                    outcome.recompiled.append(name)
            if outcome.recompiled:
                outcome.ok = False
        return outcome

    def _apply_and_verify(self, box: quarantine.Quarantine, plan: Plan, result: PruneResult, modules: list[str],
                          command: str, baseline: verify.Outcome | None) -> PruneResult:
        started = time.monotonic()
        entries, failed = box.apply(plan.removals)
        result.failed = failed
        result.timings["apply"] = time.monotonic() - started
        strips = [e for e in entries if e.kind == "strip"]
        if strips:
            check_started = time.monotonic()
            entries = self._check_strips(box, entries, result)
            result.timings["load_check"] = time.monotonic() - check_started
        usable = [e.removal for e in entries]
        if baseline is None:
            box.discard()
            self._tally(result, entries)
            self.say("verify is off: removals were not checked")
            return result

        outcome = self._verify(modules, command, baseline)
        result.verify_runs = 1
        result.timings["verify_after"] = outcome.seconds
        if outcome.ok:
            commit_started = time.monotonic()
            box.discard(background=True)
            result.timings["commit"] = time.monotonic() - commit_started
            self._tally(result, entries)
            self._log_done(result, outcome)
            return result

        box.restore(entries)
        self.warn("Warning: After pruning, your app's imports failed:\n" + "\n".join(outcome.problems()[:8])
                  + "\nEverything was put back; slugslim is looking for the rule that caused it.")
        culprits = self._bisect(box, usable, outcome, result)
        blamed = {(c["rule"], c["package"]) for c in culprits}
        rest = [r for r in usable if (r.rule, r.package) not in blamed]
        result.culprits = culprits
        for c in culprits:
            self.warn(f"Warning: Rule '{c['rule']}'" + (f" on package {c['package']}" if c["package"] else "")
                      + " broke your app:\n" + "\n".join(c["problems"][:5])
                      + "\nslugslim keeps those files. To silence this, add a prune.keep glob or turn the rule off.")
        if culprits and rest:
            entries, _failed = box.apply(rest)
            final = self._verify(modules, command, baseline)
            result.verify_runs += 1
            if final.ok:
                box.discard(background=True)
                result.status = "partial"
                self._tally(result, entries)
                self._log_done(result, final)
                return result
            box.restore(entries)
            outcome = final
        box.discard()
        result.status = "unpruned"
        result.removed, result.files = {}, {}
        problems = outcome.problems()
        if self.config.verify.strict:
            raise VerificationError(problems)
        self.warn("Warning: slugslim could not prune site-packages without breaking your app.\n"
                  + "\n".join(problems[:8])
                  + "\nEverything was put back and the build continues UNPRUNED, so the slug is larger than it "
                  "could be.\nSet verify.strict: true in slugslim.yml to fail the build instead.")
        return result

    def _check_strips(self, box: quarantine.Quarantine, entries: list[quarantine.Entry],
                      result: PruneResult) -> list[quarantine.Entry]:
        """Every stripped file must still load; roll back those that only fail once stripped."""
        strips = {box.target(e.removal): e for e in entries if e.kind == "strip"}
        broken = load_check(self.python, self.env, list(strips), self._timeout(300))
        if not broken:
            return entries
        suspects = [strips[p] for p in broken]
        box.restore(suspects)
        before = load_check(self.python, self.env, list(broken), self._timeout(300))
        keep_out: set[int] = set()
        for path, why in broken.items():
            entry = strips[path]
            if path in before:
                continue  # ctypes cannot load it even unstripped; the import check decides
            keep_out.add(entry.id)
            result.strip_rolled_back[entry.removal.path] = why
            self.say(f"Kept the symbols of {entry.removal.path}: stripped, it fails to load ({why})")
        again = [strips[p].removal for p in broken if strips[p].id not in keep_out]
        redone, _failed = box.apply(again)
        return [e for e in entries if e not in suspects] + redone

    def _bisect(self, box: quarantine.Quarantine, removals: list[Removal], failure: verify.Outcome,
                result: PruneResult) -> list[dict[str, Any]]:
        runs = 0

        def attempt(items: list[Removal]) -> verify.Outcome:
            nonlocal runs
            runs += 1
            entries, _failed = box.apply(items)
            try:
                return self._verify(result.verified_modules, self._command, self._baseline)
            finally:
                box.restore(entries)

        def find(groups: list[tuple[tuple[str, str], list[Removal]]], known: verify.Outcome
                 ) -> list[tuple[tuple[str, str], verify.Outcome]]:
            if len(groups) == 1 or runs >= MAX_BISECT_RUNS:
                return [(label, known) for label, _ in groups]
            half = len(groups) // 2
            left, right = groups[:half], groups[half:]
            left_out = attempt([r for _, rs in left for r in rs])
            right_out = attempt([r for _, rs in right for r in rs])
            found = []
            if not left_out.ok:
                found += find(left, left_out)
            if not right_out.ok:
                found += find(right, right_out)
            if left_out.ok and right_out.ok:
                return [(label, known) for label, _ in groups]  # only together do they break it
            return found

        by_rule: dict[str, list[Removal]] = {}
        for r in removals:
            by_rule.setdefault(r.rule, []).append(r)
        rule_groups = [((rule, ""), rs) for rule, rs in sorted(by_rule.items(), key=lambda kv: RULE_ORDER.index(kv[0])
                                                                   if kv[0] in RULE_ORDER else 99)]
        culprits: list[dict[str, Any]] = []
        for (rule, _), outcome in find(rule_groups, failure):
            by_package: dict[str, list[Removal]] = {}
            for r in by_rule[rule]:
                by_package.setdefault(r.package, []).append(r)
            package_groups = [((rule, pkg), rs) for pkg, rs in sorted(by_package.items())]
            for (_, pkg), pkg_outcome in find(package_groups, outcome):
                culprits.append({"rule": rule, "package": pkg, "problems": pkg_outcome.problems(),
                                 "bytes": sum(r.bytes for r in by_package[pkg])})
        result.verify_runs += runs
        return culprits

    def _tally(self, result: PruneResult, entries: list[quarantine.Entry]) -> None:
        for e in entries:
            rule = e.removal.rule
            result.removed[rule] = result.removed.get(rule, 0) + e.saved
            result.files[rule] = result.files.get(rule, 0) + e.removal.files

    def _log_plan(self, plan: Plan) -> None:
        totals = plan.by_rule()
        counts: dict[str, int] = {}
        for r in plan.removals:
            counts[r.rule] = counts.get(r.rule, 0) + 1
        self.say(f"Planned {len(plan.removals)} removals, {log.human_bytes(plan.bytes)}:")
        for rule in RULE_ORDER:
            if rule in totals:
                self.say(f"  {rule:<9} {log.human_bytes(totals[rule]):>9}  ({counts[rule]} paths)")

    def _log_done(self, result: PruneResult, outcome: verify.Outcome) -> None:
        used = sum(1 for _s, _c, good in outcome.modules.values() if good)
        booted = ", the web process answers" if self._web else ""
        self.say(f"Verified the pruned tree ({log.seconds(outcome.seconds)}): "
                 f"{len(result.verified_modules)} imports pass{booted}, {used} modules load their bytecode")
        self.say(f"Removed {log.human_bytes(result.bytes)} from site-packages")


def _strip_skips(active: list[Rule]) -> dict[str, str]:
    for rule in active:
        if isinstance(rule, symbols.SymbolsRule):
            return dict(rule.skipped)
    return {}


def default_python(site_packages: Path) -> tuple[str, dict[str, str]]:
    """The interpreter that owns a site-packages dir, else ours with PYTHONPATH pointing at it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    lib_dir = site_packages.parent
    if lib_dir.parent.name == "lib":
        candidate = lib_dir.parent.parent / "bin" / "python"
        if candidate.exists():
            return str(candidate), env
    env["PYTHONPATH"] = str(site_packages)
    return sys.executable, env
