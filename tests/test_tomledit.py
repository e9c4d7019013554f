"""Edits of a TOML file's text (deps/tomledit.py): only the characters that change, the rest byte for byte."""

from __future__ import annotations

import pytest

from slugslim.deps import tomlfile
from slugslim.deps.tomledit import Document, TomlEditError, dumps

PYPROJECT = """\
# The app
[project]
name = "app"
dependencies = [
    "sentence-transformers==5.0.0",  # the model
    'flask>=3'
]
single = ["a", "b",]
empty = []

[tool.poetry.dependencies]   # for Poetry
python = "^3.11"
torch = { version = "2.13.0", markers = "sys_platform == 'linux'" }
"TensorFlow" = "2.21.0"
notes = \"\"\"
[not.a.table]
torch = "no"
\"\"\"

[[tool.poetry.source]]
name = "mirror"
url = "https://example.org/simple"
"""


def entry(doc: Document, table: tuple[str, ...], key: str) -> object:
    return next(s for s in doc.entries(table) if s.key == (key,))


def test_statements_know_their_table_and_skip_what_only_looks_like_a_header() -> None:
    doc = Document(PYPROJECT)
    keys = [(s.table, s.key) for s in doc.statements if s.key]
    assert keys == [(("project",), ("name",)), (("project",), ("dependencies",)), (("project",), ("single",)),
                    (("project",), ("empty",)), (("tool", "poetry", "dependencies"), ("python",)),
                    (("tool", "poetry", "dependencies"), ("torch",)),
                    (("tool", "poetry", "dependencies"), ("TensorFlow",)),
                    (("tool", "poetry", "dependencies"), ("notes",)), (("tool", "poetry", "source"), ("name",)),
                    (("tool", "poetry", "source"), ("url",))]
    listed = entry(doc, ("project",), "dependencies")
    assert [doc.text[a:b] for a, b in doc.array_items(listed)] == ['"sentence-transformers==5.0.0"', "'flask>=3'"]


def test_an_item_appended_to_an_array_follows_its_layout() -> None:
    doc = Document(PYPROJECT)
    multi = doc.append_item(entry(doc, ("project",), "dependencies"), '"torch==2.13.0"')
    assert multi == PYPROJECT.replace("    'flask>=3'\n]", "    'flask>=3',\n    \"torch==2.13.0\"\n]")
    single = doc.append_item(entry(doc, ("project",), "single"), '"c"')
    assert single == PYPROJECT.replace('single = ["a", "b",]', 'single = ["a", "b", "c",]')
    empty = doc.append_item(entry(doc, ("project",), "empty"), '"c"')
    assert empty == PYPROJECT.replace("empty = []", 'empty = ["c"]')
    for text in (multi, single, empty):
        tomlfile.loads(text)


def test_a_value_is_rewritten_in_place_and_a_key_renamed() -> None:
    doc = Document(PYPROJECT)
    torch = entry(doc, ("tool", "poetry", "dependencies"), "torch")
    edited = doc.set_value(torch, {"version": "2.13.0", "markers": "sys_platform == 'linux'", "source": "cpu"})
    assert edited == PYPROJECT.replace('markers = "sys_platform == \'linux\'" }',
                                       'markers = "sys_platform == \'linux\'", source = "cpu" }')
    renamed = doc.rename(entry(doc, ("tool", "poetry", "dependencies"), "TensorFlow"), "tensorflow-cpu")
    assert renamed == PYPROJECT.replace('"TensorFlow" = "2.21.0"', 'tensorflow-cpu = "2.21.0"')


def test_a_key_goes_last_in_its_table_and_a_missing_table_at_the_end() -> None:
    doc = Document(PYPROJECT)
    added = doc.insert_entry(("tool", "poetry", "dependencies"), 'torchvision = "0.28.0"')
    assert added == PYPROJECT.replace('"""\n\n[[tool', '"""\ntorchvision = "0.28.0"\n\n[[tool')
    assert tomlfile.loads(added)["tool"]["poetry"]["dependencies"]["torchvision"] == "0.28.0"
    appended = doc.insert_entry(("tool", "uv", "sources"), 'torch = { index = "cpu" }')
    assert appended == PYPROJECT + '\n[tool.uv.sources]\ntorch = { index = "cpu" }\n'
    block = Document("a = 1").append_block(["[[source]]", 'name = "x"'])
    assert block == 'a = 1\n\n[[source]]\nname = "x"\n'


def test_crlf_files_keep_their_line_endings() -> None:
    text = '[packages]\r\nflask = "*"\r\n'
    added = Document(text).insert_entry(("packages",), 'torch = "==2.13.0"')
    assert added == '[packages]\r\nflask = "*"\r\ntorch = "==2.13.0"\r\n'


def test_a_table_made_by_dotted_keys_is_not_edited_one_made_by_sub_tables_gets_a_header() -> None:
    doc = Document('[tool.poetry]\ndependencies.flask = "^3"\n')
    with pytest.raises(TomlEditError, match="without a header"):
        doc.insert_entry(("tool", "poetry", "dependencies"), 'torch = "2.13.0"')
    doc = Document('[[tool.uv.index]]\nname = "a"\n\n\n')
    added = doc.insert_entry(("tool", "uv"), "x = 1", first=True)
    assert added == '[[tool.uv.index]]\nname = "a"\n\n\n[tool.uv]\nx = 1\n'  # the blank lines stay as they were


def test_keys_go_first_in_their_table_when_asked() -> None:
    doc = Document('[tool.uv.sources]  # ours\nmylib = { path = "lib" }\n')
    assert doc.insert_entry(("tool", "uv", "sources"), "a = 1", "b = 2", first=True) == (
        '[tool.uv.sources]  # ours\na = 1\nb = 2\nmylib = { path = "lib" }\n')


def test_values_are_written_as_toml() -> None:
    value = {"version": "==2.13.0", "index": "pytorch-cpu", "extras": ["a"], "optional": True, "n": 2}
    assert tomlfile.loads(f"v = {dumps(value)}")["v"] == value
    assert dumps({"a": "b"}, spaced=False) == '{a = "b"}'
    assert dumps('say "hi"\\') == '"say \\"hi\\"\\\\"'
