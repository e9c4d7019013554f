"""Web processes that fit the dyno's memory: measured at build time, applied at dyno start.

``import tensorflow`` (2.21.0, CPU build) alone peaks at 536 MB, and heroku/python's
``.profile.d/WEB_CONCURRENCY.sh`` starts one process per 256 MB: 2 on a 512 MB dyno, which is then
over its quota (R14) from the first request and killed at twice the quota (R15). This step takes
the peak memory of the verification run (the app's Python importing what the app imports, in
its own process: what one web process needs before it serves anything), and

- writes ``.profile.d/slugslim-memory.sh``, which sets WEB_CONCURRENCY at dyno start to the
  processes that fit (at least 1, never more than heroku/python's own value, never over yours);
- warns at build time when one process does not fit the smallest dynos (512 MB);
- records the measurement and the concurrency per dyno size for the report.

``memory: false`` turns it off. When the boot check booted the Procfile's web process, its
resident memory (parent and one worker, after its answers) is the measurement instead: that is
what a dyno runs. With ``runtime.engine: litert`` that process runs on LiteRT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slugslim.appcheck import imports, verify
from slugslim.core import installed, log
from slugslim.core.context import FinishContext

PROFILE_SCRIPT = Path(".profile.d") / "slugslim-memory.sh"
TEMPLATE = Path(__file__).parents[1] / "boot" / "slugslim-memory.sh"
MIB = 1 << 20
# What serving adds to the import check's peak. Measured on tensorflow-cpu 2.21.0 + flask with the real
# heroku/python: import check 496 MB; the gunicorn worker after its first answer 520 MB, plus a 27 MB parent.
HEADROOM = 1.10
HEROKU_MB_PER_PROCESS = 256  # heroku/python's minimum_memory_per_process_in_mb
SMALLEST_DYNO_MB = 512
# Dyno sizes: memory (MB, as the cgroup limit reports it) and the CPU cores nproc reports on it, which
# give the values heroku/python's script lists (2, 4, 5 and 17).
DYNO_SIZES: tuple[tuple[str, int, int], ...] = (
    ("Eco, Basic, Standard-1X", 512, 8),
    ("Standard-2X", 1024, 8),
    ("Performance-M", 2560, 2),
    ("Performance-L", 14336, 8),
)


def heroku_concurrency(memory_mb: int, cores: int) -> int:
    """heroku/python's WEB_CONCURRENCY: RAM / 256 MB (at least 1), at most 2 * cores + 1."""
    return min(max(1, memory_mb // HEROKU_MB_PER_PROCESS), cores * 2 + 1)


def concurrency(memory_mb: int, cores: int, process_mb: int) -> int:
    """What slugslim-memory.sh sets: the processes that fit, at least 1, at most heroku/python's value."""
    return min(max(1, memory_mb // process_mb), heroku_concurrency(memory_mb, cores))


@dataclass
class MemoryResult:
    enabled: bool = True
    process_bytes: int = 0
    measured_by: str = ""
    per_dyno: list[dict[str, Any]] = field(default_factory=list)
    script: str = ""

    @property
    def measured_mb(self) -> int:
        return math.ceil(self.process_bytes / MIB)

    @property
    def process_mb(self) -> int:
        """What one serving web process is budgeted: the measurement plus ``HEADROOM``."""
        return math.ceil(self.process_bytes * HEADROOM / MIB)

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "process_bytes": self.process_bytes, "measured_mb": self.measured_mb,
                "process_mb": self.process_mb,
                "measured_by": self.measured_by, "per_dyno": self.per_dyno, "script": self.script}


def measured(ctx: FinishContext) -> tuple[int, str]:
    """(peak bytes of one web process, how it was measured), or (0, why not)."""
    prune = ctx.results.get("prune")
    prune = prune if isinstance(prune, dict) else {}
    runtime = ctx.results.get("runtime")
    # On LiteRT (slugslim.runtime), its own boot of the web process, when the prune booted none.
    litert = runtime.get("memory", {}).get("litert") if isinstance(runtime, dict) and \
        runtime.get("status") == "litert" else None
    # The booted web process, when the boot check ran, is what a dyno really runs: it includes
    # the server's parent and what the first requests loaded.
    for value, how in ((prune.get("web_rss"), "the booted web process"), (litert, "the booted web process"),
                       (prune.get("verify_peak_rss"), "the import check")):
        if isinstance(value, int) and value > 0:
            return value, how
    if not ctx.config.verify.enabled or ctx.site_packages is None:
        return 0, "verify is off" if ctx.site_packages is not None else "no site-packages"
    # The prune step did not run its import check: run one, the same way.
    from slugslim.removal.tree import scan

    found = imports.scan_app(ctx.build_dir, installed.console_scripts(ctx.site_packages))
    modules, maybe = verify.targets(found, scan(ctx.site_packages).top_level_modules(), ctx.config.verify.imports)
    outcome = verify.run(ctx.python, ctx.python_env(), ctx.build_dir, modules, ctx.site_packages,
                         timeout=max(1.0, min(ctx.config.verify.timeout, ctx.time_left())), maybe=maybe)
    return (outcome.peak_rss, "the import check") if outcome.peak_rss else (0, "the import check failed")


def install_script(build_dir: Path, process_mb: int) -> Path:
    target = build_dir / PROFILE_SCRIPT
    target.parent.mkdir(exist_ok=True)
    if target.is_symlink():
        target.unlink()
    target.write_text(TEMPLATE.read_text(encoding="utf-8").replace("@PROCESS_MB@", str(process_mb)),
                      encoding="utf-8")
    target.chmod(0o755)
    return target


def run(ctx: FinishContext) -> MemoryResult:
    """The finish-phase step. Stores ``ctx.results["memory"]``."""
    result = MemoryResult(enabled=ctx.config.memory.enabled)
    ctx.results["memory"] = result.to_json()
    if not result.enabled:
        return result
    log.step("Memory per web process")
    result.process_bytes, result.measured_by = measured(ctx)
    if not result.process_bytes:
        log.detail(f"Not measured ({result.measured_by}), so WEB_CONCURRENCY is left to heroku/python")
        ctx.results["memory"] = result.to_json()
        return result
    mb = result.process_mb
    result.per_dyno = [{"dyno": name, "memory_mb": ram, "heroku_python": heroku_concurrency(ram, cores),
                        "web_concurrency": concurrency(ram, cores, mb)} for name, ram, cores in DYNO_SIZES]
    result.script = install_script(ctx.build_dir, mb).relative_to(ctx.build_dir).as_posix()
    log.detail(f"One web process needs about {mb} MB ({result.measured_by}: {result.measured_mb} MB, "
               "plus 10% headroom for serving)")
    log.detail(f"{result.script} sets WEB_CONCURRENCY at dyno start: "
               + ", ".join(f"{d['web_concurrency']} on {d['dyno']} ({_ram(d['memory_mb'])})" for d in result.per_dyno)
               + " (unless you set it)")
    if mb > SMALLEST_DYNO_MB:
        log.warning(
            f"Warning: One web process of this app needs about {mb} MB, more than the {SMALLEST_DYNO_MB} MB of\n"
            "Eco, Basic and Standard-1X dynos. There the app is over its memory quota (R14) from the start,\n"
            f"and Heroku restarts it at twice the quota (R15). slugslim measured this at build time\n"
            f"({result.measured_by}). Choose one of:\n"
            "  - a larger dyno: Standard-2X has 1 GB (heroku ps:type web=standard-2x);\n"
            "  - import the framework lazily, inside the code that needs it, not when the app starts;\n"
            "  - a smaller runtime: for inference only, ai-edge-litert (TensorFlow Lite) runs a small Keras\n"
            "    model in about 40 MB.\n"
            "Set 'memory: false' in slugslim.yml to silence this and leave WEB_CONCURRENCY to heroku/python."
        )
    ctx.results["memory"] = result.to_json()
    return result


def _ram(memory_mb: int) -> str:
    return f"{memory_mb / 1024:g} GB" if memory_mb >= 1024 else f"{memory_mb} MB"

