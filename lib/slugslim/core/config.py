"""slugslim.yml and SLUGSLIM_* config vars: one schema, validated, with errors that name the key.

The file lives at the app root and is read with ``yaml.safe_load``. Every key can also be
set as a config var named ``SLUGSLIM_<SECTION>_<KEY>`` (for example
``SLUGSLIM_PRUNE_BYTECODE=keep``); config vars win over the file. A whole section can be
switched off with ``<section>: false`` in the file or ``SLUGSLIM_<SECTION>=false``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from slugslim.core import hubconfig, runtimeconfig
from slugslim.core.errors import ConfigError
from slugslim.core.hubconfig import HubConfig, HubModels
from slugslim.core.runtimeconfig import RuntimeConfig, Tolerance
from slugslim.core.yamlfile import read_file, type_name

CONFIG_FILE = "slugslim.yml"
ENV_PREFIX = "SLUGSLIM_"
# Config vars that are switches of the buildpack itself, not settings in the schema.
# SLUGSLIM_MODELS_AUTH (user:password for an https models.source) is read by the store and at boot.
NON_SCHEMA_VARS = frozenset({"SLUGSLIM_DISABLE", "SLUGSLIM_PIP", "SLUGSLIM_DEBUG", "SLUGSLIM_MODELS_AUTH"})

BYTECODE_POLICIES = ("imported", "distributions", "keep", "drop")
BOOT_CHOICES = ("auto", "false")
FETCH_FAILURE_POLICIES = ("fail", "warn")
LFS_POLICIES = ("warn", "fail")


@dataclass(frozen=True)
class SwapConfig:
    enabled: bool = True
    keep: tuple[str, ...] = ()
    torch_index: str = "https://download.pytorch.org/whl/cpu"  # torch's +cpu builds: PyTorch's CPU index, or a mirror


@dataclass(frozen=True)
class PruneConfig:
    enabled: bool = True
    bytecode: str = "distributions"
    tests: bool = True
    headers: bool = True
    symbols: bool = True
    packages: tuple[str, ...] = ("libclang",)
    keep: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelsConfig:
    enabled: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    min_size: float = 10.0
    source: str = ""
    upload: bool = False
    strict: bool = False
    boot_timeout: int = 45
    on_fetch_failure: str = "fail"
    fetch_on_release: bool = False
    lfs: str = "warn"  # what a Git LFS pointer in the app does to the build


@dataclass(frozen=True)
class VerifyConfig:
    enabled: bool = True
    command: str = ""
    imports: tuple[str, ...] = ()
    strict: bool = False
    timeout: int = 600
    boot: str = "auto"  # boot the Procfile's web process when there is one; "false" turns it off
    boot_timeout: int = 60
    paths: tuple[str, ...] = ("/",)


@dataclass(frozen=True)
class ReportConfig:
    enabled: bool = True
    ignore_unused: tuple[str, ...] = ()
    top: int = 10


@dataclass(frozen=True)
class MemoryConfig:
    enabled: bool = True  # measure a web process and fit WEB_CONCURRENCY to the dyno


@dataclass(frozen=True)
class LimitsConfig:
    soft_mb: int = 300
    hard_mb: int = 500


@dataclass(frozen=True)
class Config:
    swap: SwapConfig = field(default_factory=SwapConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    # Seconds the whole finish phase may take; what is left when they are up is skipped.
    budget: int = 300
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    hf: HubConfig = field(default_factory=HubConfig)
    # Where each non-default value came from, e.g. {"prune.bytecode": "slugslim.yml line 4"}.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)


SECTIONS: dict[str, type[Any]] = {
    "swap": SwapConfig,
    "prune": PruneConfig,
    "models": ModelsConfig,
    "verify": VerifyConfig,
    "report": ReportConfig,
    "limits": LimitsConfig,
    "memory": MemoryConfig,
    "runtime": RuntimeConfig,
    "hf": HubConfig,
}

# Settings at the top level of the file, outside any section (all whole numbers).
TOP_LEVEL = ("budget",)

# Keys whose value must be one of a few words.
CHOICES: dict[str, tuple[str, ...]] = {
    "prune.bytecode": BYTECODE_POLICIES,
    "models.on_fetch_failure": FETCH_FAILURE_POLICIES,
    "verify.boot": BOOT_CHOICES,
    "models.lfs": LFS_POLICIES,
    "runtime.engine": runtimeconfig.ENGINES,
    "runtime.quantize": runtimeconfig.QUANTIZE_MODES,
}


def section_keys(section: str) -> list[str]:
    return [f.name for f in fields(SECTIONS[section])]


def _kind(section: str, key: str) -> str:
    default = getattr(SECTIONS[section](), key)
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, (Tolerance, HubModels)):
        return "tolerance" if isinstance(default, Tolerance) else "hubmodels"
    if isinstance(default, tuple):
        return "list"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "number"
    return "str"


_KIND_WORDS = {
    "bool": "true or false",
    "list": "a list of strings",
    "int": "a whole number",
    "number": "a number",
    "str": "a string",
    "tolerance": "a mapping of max_abs, top1 and cosine",
    "hubmodels": "a list of Hub model ids",
}


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    if close:
        return f"Did you mean '{close[0]}'? "
    return ""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(path: str, kind: str, value: object, source: str) -> object:
    """Check one value against its kind; return it in the dataclass's representation."""
    expected = _KIND_WORDS[kind]
    choices = CHOICES.get(path)
    if choices:
        expected = "one of " + ", ".join(choices)

    def wrong() -> ConfigError:
        number = kind == "str" and isinstance(value, (int, float)) and not isinstance(value, bool)
        quoted = " in quotes (YAML reads 2.10 as the number 2.1)" if number else ""
        return ConfigError(source, f"'{path}' must be {expected}, but it is {type_name(value)}.",
                           f"Change '{path}' to {expected}{quoted}.")

    if kind in ("tolerance", "hubmodels"):
        return (runtimeconfig.tolerance if kind == "tolerance" else hubconfig.models)(path, value, source)
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong()
        return value
    if kind == "list":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise wrong()
        return tuple(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise wrong()
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise wrong()
        return float(value)
    if value is None and not choices:
        return ""
    if choices == BOOT_CHOICES and isinstance(value, bool):
        value = "auto" if value else "false"  # YAML reads `boot: false` as a boolean
    if not isinstance(value, str) or (choices and value not in choices):
        raise wrong()
    return value


def _env_value(kind: str, raw: str) -> object:
    """Config vars are strings; read them the way a user would write them."""
    text = raw.strip()
    if kind == "bool":
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        return text
    if kind == "list":
        return [part.strip() for part in re.split(r"[,\n]", text) if part.strip()]
    if kind in ("int", "number"):
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            return text
    return text


def _apply_file(data: dict[str, Any], lines: dict[str, int], values: dict[str, dict[str, object]],
                origins: dict[str, str]) -> None:
    sections = list(SECTIONS)
    for section, body in data.items():
        where = f"{CONFIG_FILE} line {lines.get(str(section), '?')}"
        if section in TOP_LEVEL:
            values[""][section] = _coerce(section, "int", body, where)
            origins[section] = where
            continue
        if section not in SECTIONS:
            raise ConfigError(
                where,
                f"Unknown section '{section}'.",
                f"{_suggest(str(section), [*sections, *TOP_LEVEL])}Valid sections are: {', '.join(sections)}; "
                f"and {', '.join(TOP_LEVEL)} is a setting of its own.",
            )
        if isinstance(body, bool):
            values[section]["enabled"] = body
            origins[f"{section}.enabled"] = where
            continue
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(
                where,
                f"'{section}' must be a mapping of settings, or true/false, but it is {type_name(body)}.",
                f"Write '{section}:' followed by indented settings, or '{section}: false' to turn it off.",
            )
        keys = section_keys(section)
        for key, value in body.items():
            path = f"{section}.{key}"
            key_where = f"{CONFIG_FILE} line {lines.get(path, lines.get(str(section), '?'))}"
            if key not in keys:
                raise ConfigError(
                    key_where,
                    f"Unknown key '{path}'.",
                    f"{_suggest(str(key), keys)}Valid keys in '{section}' are: {', '.join(keys)}.",
                )
            values[section][key] = _coerce(path, _kind(section, key), value, key_where)
            origins[path] = key_where


def _apply_env(env: Mapping[str, str], values: dict[str, dict[str, object]], origins: dict[str, str]) -> list[str]:
    """Apply SLUGSLIM_* config vars. Returns warnings for vars that match nothing."""
    warnings: list[str] = []
    known: dict[str, tuple[str, str]] = {}
    for section in SECTIONS:
        known[f"{ENV_PREFIX}{section.upper()}"] = (section, "enabled")
        for key in section_keys(section):
            known[f"{ENV_PREFIX}{section.upper()}_{key.upper()}"] = (section, key)
    known.update({f"{ENV_PREFIX}{key.upper()}": ("", key) for key in TOP_LEVEL})
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in NON_SCHEMA_VARS:
            continue
        if name not in known:
            section_match = next((s for s in SECTIONS if name.startswith(f"{ENV_PREFIX}{s.upper()}_")), None)
            hint = _suggest(name, list(known))
            if section_match:
                raise ConfigError(
                    f"config var {name}",
                    f"'{name}' is not a setting of the '{section_match}' section.",
                    f"{hint}Valid keys in '{section_match}' are: {', '.join(section_keys(section_match))}.",
                )
            warnings.append(f"The config var {name} is not a slugslim setting and was ignored. {hint}".strip())
            continue
        section, key = known[name]
        path = f"{section}.{key}" if section else key
        where = f"config var {name}"
        kind = _kind(section, key) if section else "int"
        values[section][key] = _coerce(path, kind, _env_value(kind, env[name]), where)
        origins[path] = where
    return warnings


def read_env_dir(env_dir: Path | None) -> dict[str, str]:
    """Config vars as Heroku hands them to a buildpack: one file per var in ENV_DIR."""
    env: dict[str, str] = {}
    if env_dir is None or not env_dir.is_dir():
        return env
    for entry in sorted(env_dir.iterdir()):
        if entry.is_file():
            env[entry.name] = entry.read_text(encoding="utf-8", errors="replace")
    return env


@dataclass(frozen=True)
class Loaded:
    config: Config
    warnings: tuple[str, ...] = ()
    file_found: bool = False


def load(app_dir: Path, env: Mapping[str, str] | None = None) -> Loaded:
    """Read slugslim.yml from app_dir, then apply SLUGSLIM_* config vars from env."""
    values: dict[str, dict[str, object]] = {name: {} for name in ["", *SECTIONS]}
    origins: dict[str, str] = {}
    path = app_dir / CONFIG_FILE
    found = path.is_file()
    if found:
        data, lines = read_file(path)
        _apply_file(data, lines, values, origins)
    elif (app_dir / "slugslim.yaml").is_file():
        raise ConfigError(
            "slugslim.yaml",
            "slugslim reads its settings from 'slugslim.yml', so this file would be ignored.",
            "Rename slugslim.yaml to slugslim.yml.",
        )
    warnings = _apply_env(env if env is not None else {}, values, origins)
    built: dict[str, Any] = {name: cls(**values[name]) for name, cls in SECTIONS.items()}
    built.update(values[""])
    config = Config(**built, origins=origins)
    _check_cross_field(config)
    return Loaded(config=config, warnings=tuple(warnings), file_found=found)


def _check_cross_field(config: Config) -> None:
    limits = config.limits
    if limits.soft_mb > limits.hard_mb:
        raise ConfigError(
            config.origins.get("limits.soft_mb", config.origins.get("limits.hard_mb", CONFIG_FILE)),
            f"'limits.soft_mb' ({limits.soft_mb}) is larger than 'limits.hard_mb' ({limits.hard_mb}).",
            "Set limits.soft_mb to at most limits.hard_mb.",
        )
    runtimeconfig.check(config.runtime, config.origins)
    bad_path = next((p for p in config.verify.paths if not p.startswith("/")), None)
    if bad_path is not None:
        raise ConfigError(config.origins.get("verify.paths", CONFIG_FILE),
                          f"'verify.paths' entries must start with '/', but one is {bad_path!r}.",
                          f"Write it as '/{bad_path}'.")
    source = config.models.source
    if source and not re.match(r"^(s3://[^/]+|https?://[^/]+)", source):
        raise ConfigError(
            config.origins.get("models.source", CONFIG_FILE),
            f"'models.source' must start with s3://BUCKET or https://HOST, but it is {source!r}.",
            "Set models.source to something like s3://my-bucket/models or https://models.example.com/app.",
        )
    if config.models.upload and not source:
        raise ConfigError(
            config.origins.get("models.upload", CONFIG_FILE),
            "'models.upload' is true, but 'models.source' is not set, so there is nowhere to upload to.",
            "Set models.source (for example s3://my-bucket/models), or set models.upload to false.",
        )


def env_from_process(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The SLUGSLIM_* vars of a process environment (used when the hook runs with config vars exported)."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k.startswith(ENV_PREFIX)}


