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

from slugslim.appcheck import boot_check, verify
from slugslim.appcheck.loadcheck import load_check
from slugslim.core import log
from slugslim.core.config import Config
from slugslim.core.errors import BudgetError, VerificationError
from slugslim.core.plan import Plan, PruneResult, Removal
from slugslim.removal import quarantine, symbols
from slugslim.removal.planner import RULE_ORDER, plan_tree, rules
from slugslim.removal.rule import Rule
from slugslim.removal.tree import SiteTree, scan

MAX_BISECT_RUNS = 16


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
    # A plan of its own instead of the prune rules' (slugslim.runtime), and the distributions it
    # removes, whose modules the import check then leaves out.
    plan_with: Callable[[SiteTree], Plan] | None = None
    unchecked: frozenset[str] = frozenset()
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
            modules, maybe = verify.app_targets(self.app_dir, self.site_packages, tree.top_level_modules(),
                                                verify_cfg.imports, self.unchecked)
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
        active = rules(self.source) if self.plan_with is None else []
        plan = plan_tree(tree, prune_cfg, self.source, active) if self.plan_with is None else self.plan_with(tree)
        timings["plan"] = time.monotonic() - plan_started
        result = PruneResult("pruned", plan, timings=timings, verified_modules=modules, recovered=recovered,
                             verify_peak_rss=baseline.peak_rss if baseline else 0,
                             web_rss=baseline.web_rss if baseline else 0)
        result.strip_skipped = _strip_skips(active)
        if prune_cfg.symbols and active and symbols.strip_tool() is None:
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
        # The prune's rules in their order, then any other plan's (runtime.engine: litert's removal).
        for rule in [*RULE_ORDER, *sorted(set(totals) - set(RULE_ORDER))]:
            if rule in totals:
                self.say(f"  {rule:<9} {log.human_bytes(totals[rule]):>9}  ({counts[rule]} paths)")

    def _log_done(self, result: PruneResult, outcome: verify.Outcome) -> None:
        # The pruned tree is what dynos run (stripped libraries map fewer pages): its peak is the one to keep.
        result.verify_peak_rss = outcome.peak_rss or result.verify_peak_rss
        result.web_rss = outcome.web_rss or result.web_rss
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
