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
what a dyno runs. With ``runtime.engine: litert`` or ``onnx`` that process runs on LiteRT or ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path

from slugslim.appcheck import verify
from slugslim.core import log, words
from slugslim.core.context import FinishContext
from slugslim.core.results import MemoryResult, snapshot

PROFILE_SCRIPT = Path(".profile.d") / "slugslim-memory.sh"
TEMPLATE = Path(__file__).parents[1] / "boot" / "slugslim-memory.sh"
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


def measured(ctx: FinishContext) -> tuple[int, str]:
    """(peak bytes of one web process, how it was measured), or (0, why not)."""
    prune, runtime = ctx.results.prune, ctx.results.runtime
    # On LiteRT or ONNX Runtime (the runtime step), its own boot of the web process, when the prune booted none.
    engine = runtime.memory.get(runtime.status) if runtime is not None and runtime.status in ("litert", "onnx") \
        else None
    # The booted web process, when the boot check ran, is what a dyno really runs: it includes
    # the server's parent and what the first requests loaded.
    for value, how in ((prune.web_rss if prune else 0, "the booted web process"), (engine, "the booted web process"),
                       (prune.verify_peak_rss if prune else 0, "the import check")):
        if isinstance(value, int) and value > 0:
            return value, how
    if not ctx.config.verify.enabled or ctx.site_packages is None:
        return 0, "verify is off" if ctx.site_packages is not None else "no site-packages"
    # The prune step did not run its import check: run one, the same way (the removal engine's targets).
    modules, maybe = verify.app_targets(ctx.build_dir, ctx.site_packages, None, ctx.config.verify.imports)
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
    """The finish-phase step. Puts its result into ``ctx.results.memory``."""
    result = MemoryResult(enabled=ctx.config.memory.enabled)
    ctx.results.memory = snapshot(result)
    if not result.enabled:
        return result
    log.step("Memory per web process")
    result.process_bytes, result.measured_by = measured(ctx)
    if not result.process_bytes:
        log.detail(f"Not measured ({result.measured_by}), so WEB_CONCURRENCY is left to heroku/python")
        ctx.results.memory = snapshot(result)
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
        log.warning(words.web_process_over_the_smallest_dyno(mb, SMALLEST_DYNO_MB, result.measured_by))
    ctx.results.memory = snapshot(result)
    return result


def _ram(memory_mb: int) -> str:
    return f"{memory_mb / 1024:g} GB" if memory_mb >= 1024 else f"{memory_mb} MB"

