"""slugslim.yml and SLUGSLIM_* config vars: defaults, precedence, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from slugslim.core import config
from slugslim.core.errors import ConfigError


def load(tmp_path: Path, text: str | None = None, env: dict[str, str] | None = None) -> config.Config:
    if text is not None:
        (tmp_path / "slugslim.yml").write_text(text, encoding="utf-8")
    return config.load(tmp_path, env or {}).config


def error_of(tmp_path: Path, text: str | None = None, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env)
    return caught.value


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.swap.enabled and settings.prune.bytecode == "distributions"
    assert settings.prune.packages == ("libclang",)
    assert settings.models.min_size == 10.0 and settings.models.boot_timeout == 45
    assert settings.models.on_fetch_failure == "fail"
    assert (settings.limits.soft_mb, settings.limits.hard_mb) == (300, 500)


def test_file_values_and_section_shorthand(tmp_path: Path) -> None:
    settings = load(tmp_path, "swap: false\nprune:\n  bytecode: drop\n  keep: ['foo/**']\nmodels:\n  min_size: 2.5\n")
    assert settings.swap.enabled is False
    assert settings.prune.bytecode == "drop" and settings.prune.keep == ("foo/**",)
    assert settings.models.min_size == 2.5
    assert settings.origins["prune.bytecode"] == "slugslim.yml line 3"


def test_config_vars_win_over_the_file(tmp_path: Path) -> None:
    env = {"SLUGSLIM_PRUNE_BYTECODE": "keep", "SLUGSLIM_SWAP_KEEP": "nvidia-cublas-cu12, tensorrt",
           "SLUGSLIM_MODELS": "off", "SLUGSLIM_LIMITS_HARD_MB": "1000", "SLUGSLIM_DISABLE": "0"}
    settings = load(tmp_path, "prune:\n  bytecode: drop\nmodels:\n  enabled: true\n", env)
    assert settings.prune.bytecode == "keep"
    assert settings.swap.keep == ("nvidia-cublas-cu12", "tensorrt")
    assert settings.models.enabled is False
    assert settings.limits.hard_mb == 1000
    assert settings.origins["prune.bytecode"] == "config var SLUGSLIM_PRUNE_BYTECODE"


def test_unknown_key_is_named_with_the_closest_valid_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, "prune:\n  bytecode: keep\n  kep: ['a']\n")
    assert err.source == "slugslim.yml line 3"
    assert "Unknown key 'prune.kep'." in err.render()
    assert "Did you mean 'keep'?" in err.render()


def test_unknown_section(tmp_path: Path) -> None:
    err = error_of(tmp_path, "modles:\n  upload: true\n")
    assert "Unknown section 'modles'." in err.render() and "Did you mean 'models'?" in err.render()


def test_wrong_type_gives_path_expected_and_found(tmp_path: Path) -> None:
    err = error_of(tmp_path, "limits:\n  hard_mb: big\n")
    assert err.source == "slugslim.yml line 2"
    assert "'limits.hard_mb' must be a whole number, but it is a string ('big')." in err.render()


def test_wrong_choice(tmp_path: Path) -> None:
    err = error_of(tmp_path, "prune:\n  bytecode: some\n")
    assert "'prune.bytecode' must be one of imported, distributions, keep, drop" in err.render()


def test_invalid_yaml_gives_line_and_column(tmp_path: Path) -> None:
    err = error_of(tmp_path, "prune:\n  keep: [a, b\nmodels: {}\n")
    assert err.source.startswith("slugslim.yml at line ")
    assert ", column " in err.source
    assert "not valid YAML" in err.render()


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "must be a mapping of sections" in error_of(tmp_path, "- prune\n").render()


def test_bad_config_var_is_named(tmp_path: Path) -> None:
    err = error_of(tmp_path, None, {"SLUGSLIM_PRUNE_BYTECOD": "keep"})
    assert err.source == "config var SLUGSLIM_PRUNE_BYTECOD"
    assert "Did you mean 'SLUGSLIM_PRUNE_BYTECODE'?" in err.render()
    err = error_of(tmp_path, None, {"SLUGSLIM_VERIFY_STRICT": "maybe"})
    assert "'verify.strict' must be true or false" in err.render()


def test_config_var_outside_any_section_warns(tmp_path: Path) -> None:
    loaded = config.load(tmp_path, {"SLUGSLIM_PRUNNE": "false"})
    assert loaded.warnings and "SLUGSLIM_PRUNNE" in loaded.warnings[0]


def test_cross_field_checks(tmp_path: Path) -> None:
    assert "is larger than 'limits.hard_mb'" in error_of(tmp_path, "limits:\n  soft_mb: 600\n").render()
    assert "nowhere to upload to" in error_of(tmp_path, "models:\n  upload: true\n").render()
    assert "must start with s3://BUCKET" in error_of(tmp_path, "models:\n  source: ftp://x\n").render()


def test_yaml_spelling_of_the_file_name_is_caught(tmp_path: Path) -> None:
    (tmp_path / "slugslim.yaml").write_text("swap: false\n")
    assert "Rename slugslim.yaml to slugslim.yml" in error_of(tmp_path).render()


def test_read_env_dir(tmp_path: Path) -> None:
    (tmp_path / "SLUGSLIM_SWAP").write_text("false")
    (tmp_path / "OTHER").write_text("x")
    assert config.read_env_dir(tmp_path) == {"OTHER": "x", "SLUGSLIM_SWAP": "false"}
    assert config.read_env_dir(tmp_path / "missing") == {}


def test_boot_check_settings(tmp_path: Path) -> None:
    defaults = load(tmp_path).verify
    assert (defaults.boot, defaults.boot_timeout, defaults.paths) == ("auto", 60, ("/",))
    settings = load(tmp_path, None, {"SLUGSLIM_VERIFY_BOOT": "false", "SLUGSLIM_VERIFY_PATHS": "/, /health"})
    assert settings.verify.boot == "false" and settings.verify.paths == ("/", "/health")
    (tmp_path / "off").mkdir()
    assert load(tmp_path / "off", "verify:\n  boot: false\n  boot_timeout: 5\n").verify.boot == "false"
    err = error_of(tmp_path / "off", "verify:\n  paths: [health]\n")
    assert "'verify.paths' entries must start with '/'" in err.render() and "slugslim.yml line 2" in err.render()
    assert "one of auto, false" in error_of(tmp_path / "off", "verify:\n  boot: sometimes\n").render()


def test_budget_is_a_top_level_setting_from_the_file_or_a_config_var(tmp_path: Path) -> None:
    assert load(tmp_path).budget == 300
    assert load(tmp_path, "budget: 120\nprune:\n  tests: false\n").budget == 120
    settings = load(tmp_path, "budget: 120\n", {"SLUGSLIM_BUDGET": "45"})
    assert settings.budget == 45 and settings.origins["budget"] == "config var SLUGSLIM_BUDGET"
    bad = error_of(tmp_path, "prune:\n  tests: false\nbudget: soon\n")
    assert bad.source == "slugslim.yml line 3" and "'budget' must be a whole number" in bad.problem
    typo = error_of(tmp_path, "budgte: 10\n")
    assert "Did you mean 'budget'?" in typo.fix


def test_hf_models_from_the_file_and_from_a_config_var(tmp_path: Path) -> None:
    settings = load(tmp_path, "hf:\n  models:\n    - sentence-transformers/all-MiniLM-L6-v2\n"
                              "    - {id: org/c, revision: v2, files: ['*.json', model.safetensors]}\n    - gpt2\n")
    assert [(m.id, m.revision, m.files) for m in settings.hf.models] == [
        ("sentence-transformers/all-MiniLM-L6-v2", "", ()), ("org/c", "v2", ("*.json", "model.safetensors")),
        ("gpt2", "", ())]
    from_var = load(tmp_path, None, {"SLUGSLIM_HF_MODELS": "org/a, org/b@v2"})
    assert [(m.id, m.revision) for m in from_var.hf.models] == [("org/a", ""), ("org/b", "v2")]
    assert load(tmp_path, None, {"SLUGSLIM_HF": "false"}).hf.enabled is False


@pytest.mark.parametrize(("text", "says"), [
    ("hf:\n  models: org/a\n", None),
    ("hf:\n  models: {id: org/a}\n", "must be a list of Hub model ids, but it is a mapping"),
    ("hf:\n  models:\n    - ./models/local\n", "'./models/local', which is not a Hub model id"),
    ("hf:\n  models:\n    - org--x/y\n", "'org--x/y', which is not a Hub model id"),
    ("hf:\n  models:\n    - {id: org/a, branch: main}\n", "entries take id, revision and files, not branch"),
    ("hf:\n  models:\n    - {id: org/a, files: [1]}\n", "entry org/a: revision must be a string and files a list"),
])
def test_hf_models_that_are_not_ids_name_the_line_and_the_fix(tmp_path: Path, text: str, says: str | None) -> None:
    if says is None:  # one id alone is a list of one
        assert [m.id for m in load(tmp_path, text).hf.models] == ["org/a"]
        return
    err = error_of(tmp_path, text)
    assert says in err.render() and err.source.startswith("slugslim.yml line")
    assert "Write 'hf.models' as a list of Hub ids" in err.render()
