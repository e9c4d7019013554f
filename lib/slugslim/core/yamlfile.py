"""Reading slugslim.yml: YAML parsed safely, with the line of every key for error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from slugslim.core.errors import ConfigError


def type_name(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def key_lines(node: yaml.Node) -> dict[str, int]:
    """Map 'section' and 'section.key' to their 1-based line in the file."""
    lines: dict[str, int] = {}
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        lines[str(key_node.value)] = key_node.start_mark.line + 1
        if isinstance(value_node, yaml.MappingNode):
            for sub_key, _ in value_node.value:
                if isinstance(sub_key, yaml.ScalarNode):
                    lines[f"{key_node.value}.{sub_key.value}"] = sub_key.start_mark.line + 1
    return lines


def read_file(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    name = path.name
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(name, f"The file is not valid UTF-8 ({exc.reason}).", "Save it as UTF-8.") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            f"{name}{where}",
            f"This is not valid YAML: {problem}.",
            "Fix the YAML syntax there. A YAML linter or an online YAML parser will point at it too.",
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(name, f"This is not valid YAML: {exc}.", "Fix the YAML syntax.") from exc
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(
            name,
            f"The top level must be a mapping of sections, but it is {type_name(data)}.",
            "Start the file with a section name such as 'prune:'.",
        )
    return data, key_lines(node) if node is not None else {}
