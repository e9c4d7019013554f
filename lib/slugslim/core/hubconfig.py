"""The ``hf`` section: Hugging Face Hub models downloaded at build time, never at boot.

The build finds what the app downloads by running it (``slugslim.finish.hub``). ``models`` adds the
ones it loads lazily, where no check reaches them. Each entry is an id, or a mapping with ``id``, an
optional ``revision`` (a branch, tag or commit; ``main`` by default) and optional ``files`` (glob
patterns of the repo's files; by default what transformers and sentence-transformers read: configs,
tokenizer files, module folders and one weights format, safetensors first)::

    hf:
      models:
        - sentence-transformers/all-MiniLM-L6-v2
        - {id: org/classifier, revision: v2, files: ["*.json", "model.safetensors"]}

As a config var: ``SLUGSLIM_HF_MODELS=org/a,org/b@v2`` (ids, each with an optional ``@revision``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from slugslim.core.errors import ConfigError
from slugslim.core.yamlfile import type_name

# The Hub's rule for each part of "org/name": ASCII letters, digits, "-", "_", ".", at most 96
# characters, not starting or ending with "-" or "."; no "--" or "..". A single part ("gpt2") is a legacy id.
_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"(?:{_PART}/)?{_PART}")


def is_hub_id(text: str) -> bool:
    """Whether ``text`` is a Hub repo id by the Hub's own rule."""
    return _HUB_ID.fullmatch(text) is not None and "--" not in text and ".." not in text


@dataclass(frozen=True)
class HubModel:
    id: str
    revision: str = ""  # "" is the repo's default branch
    files: tuple[str, ...] = ()  # glob patterns; () is what the libraries read

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "revision": self.revision or "main", "files": list(self.files)}


class HubModels(tuple[HubModel, ...]):
    """The ``hf.models`` list (its own type, so the schema knows how to read it)."""


@dataclass(frozen=True)
class HubConfig:
    enabled: bool = True
    models: HubModels = field(default_factory=HubModels)


def models(path: str, value: object, source: str) -> HubModels:
    """``hf.models`` from the file (a list of ids or mappings) or a config var ("org/a,org/b@v2")."""
    fix = (f"Write '{path}' as a list of Hub ids, or of mappings with id, revision and files, for example "
           "'models: [sentence-transformers/all-MiniLM-L6-v2]'.")
    if isinstance(value, str):
        value = [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]
    if not isinstance(value, list):
        raise ConfigError(source, f"'{path}' must be a list of Hub model ids, but it is {type_name(value)}.", fix)
    found: list[HubModel] = []
    for item in value:
        entry: object = item
        if isinstance(item, str):
            text, _, at = item.strip().partition("@")
            entry = {"id": text, "revision": at}
        if not isinstance(entry, dict):
            raise ConfigError(source, f"Each entry of '{path}' must be an id or a mapping, not {type_name(entry)}.",
                              fix)
        unknown = sorted(str(k) for k in entry if k not in ("id", "revision", "files"))
        if unknown:
            raise ConfigError(source, f"'{path}' entries take id, revision and files, not {', '.join(unknown)}.", fix)
        name, revision, files = entry.get("id"), entry.get("revision") or "", entry.get("files") or []
        if not isinstance(name, str) or not is_hub_id(name):
            raise ConfigError(source, f"'{path}' has {name!r}, which is not a Hub model id like 'org/name'.", fix)
        if isinstance(files, str):
            files = [files]
        if not isinstance(revision, str) or not isinstance(files, list) or \
                not all(isinstance(f, str) and f for f in files):
            raise ConfigError(source, f"'{path}' entry {name}: revision must be a string and files a list of "
                                      "glob patterns.", fix)
        found.append(HubModel(name, revision.strip(), tuple(files)))
    return HubModels(found)
