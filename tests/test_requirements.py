"""pip's requirements-file grammar: what each line is, and byte-minimal rewrites."""

from __future__ import annotations

from pathlib import Path

import pytest

from slugslim.core.errors import RequirementsError
from slugslim.deps import reqedit
from slugslim.deps import requirements as req


def parse(raw: bytes | str) -> req.RequirementsFile:
    data = raw.encode() if isinstance(raw, str) else raw
    return req.parse_text(Path("requirements.txt"), data)


def kinds(parsed: req.RequirementsFile) -> list[tuple[int, str, str]]:
    return [(e.lineno, e.kind, e.text) for e in parsed.entries if e.kind != "blank"]


def test_comments_and_blank_lines_are_not_requirements() -> None:
    parsed = parse("# a comment\n\n   # indented comment\nflask  # inline comment\n")
    assert kinds(parsed) == [(4, "named", "flask")]


def test_hash_without_space_is_not_a_comment() -> None:
    parsed = parse("git+https://example.invalid/repo.git#egg=tensorflow\n")
    entry = parsed.entries[0]
    assert entry.kind == "url"
    assert entry.target_name() == "tensorflow"


def test_continuations_join_and_keep_the_first_line_number() -> None:
    parsed = parse("flask\ntensorflow==2.21.0 \\\n    --hash=sha256:aaa \\\n    --hash=sha256:bbb\ngunicorn\n")
    entries = [e for e in parsed.entries if e.kind != "blank"]
    assert [(e.lineno, e.name) for e in entries] == [(1, "flask"), (2, "tensorflow"), (5, "gunicorn")]
    assert entries[1].hashes == ("sha256:aaa", "sha256:bbb")
    assert (entries[1].first, entries[1].last) == (1, 3)


def test_a_comment_line_ends_a_continuation_and_belongs_to_it() -> None:
    parsed = parse("tensorflow \\\n# note\nflask\n")
    assert kinds(parsed) == [(1, "named", "tensorflow"), (3, "named", "flask")]
    assert (parsed.entries[0].first, parsed.entries[0].last) == (0, 1)


def test_a_trailing_comment_with_backslash_swallows_the_next_line_as_pip_does() -> None:
    parsed = parse("flask # web \\\ntensorflow\n")
    assert kinds(parsed) == [(1, "named", "flask")]


def test_crlf_bom_and_untouched_bytes_round_trip() -> None:
    raw = b"\xef\xbb\xbf# deps\r\nTensorFlow==2.21.0\r\nflask\r\n"
    parsed = parse(raw)
    assert parsed.bom == b"\xef\xbb\xbf"
    assert parsed.newline == "\r\n"
    assert parsed.entries[1].name == "tensorflow"
    assert parsed.render({}) == raw


def test_utf16_and_pep263_and_undecodable_bytes_round_trip() -> None:
    utf16 = "\ufefftensorflow\r\n".encode("utf-16-le")
    assert parse(utf16).entries[0].name == "tensorflow"
    assert parse(utf16).render({}) == utf16
    latin = b"# -*- coding: latin-1 -*-\n# caf\xe9\ntensorflow\n"
    assert parse(latin).encoding == "latin-1"
    assert parse(latin).render({}) == latin
    broken = b"# \xff\xfe not utf-8\ntensorflow\n"
    assert parse(broken).render({}) == broken


def test_option_lines_are_parsed_like_pip_options() -> None:
    parsed = parse(
        "--index-url https://pkgs.example.invalid/simple\n"
        "-i https://other.example.invalid/simple\n"
        "--extra-index-url=https://extra.example.invalid/simple\n"
        "--find-links ./wheels\n"
        "-f./more\n"
        "--only-binary :all:\n--no-binary=foo\n--pre\n--prefer-binary\n--trusted-host h\n--require-hashes\n"
        "--extra-index=https://abbreviated.example.invalid/simple\n"
    )
    assert all(e.kind == "option" for e in parsed.entries)
    flat = [(o.name, o.value) for e in parsed.entries for o in e.options]
    assert ("index-url", "https://pkgs.example.invalid/simple") in flat
    assert ("index-url", "https://other.example.invalid/simple") in flat
    assert ("extra-index-url", "https://extra.example.invalid/simple") in flat
    assert ("find-links", "./more") in flat
    assert ("pre", None) in flat and ("require-hashes", None) in flat
    assert ("extra-index-url", "https://abbreviated.example.invalid/simple") in flat


def test_nested_files_in_every_spelling() -> None:
    parsed = parse("-r base.txt\n--requirement=dev.txt\n-rother.txt\n-c constraints.txt\n--constraint c2.txt\n")
    assert [e.nested for e in parsed.entries] == [
        ("requirement", "base.txt"), ("requirement", "dev.txt"), ("requirement", "other.txt"),
        ("constraint", "constraints.txt"), ("constraint", "c2.txt"),
    ]


def test_editable_url_and_path_requirements_are_told_apart() -> None:
    parsed = parse(
        "-e git+https://example.invalid/tf.git#egg=tensorflow\n"
        "-e .\n"
        "https://example.invalid/tensorflow-2.21.0-cp311-cp311-manylinux_2_17_x86_64.whl\n"
        "./wheels/tensorflow-2.21.0-cp311-cp311-manylinux_2_17_x86_64.whl\n"
        "tensorflow @ https://example.invalid/tf.whl ; python_version >= '3.9'\n"
        "../shared\n"
        "tensorflow[and-cuda]>=2.15,<2.22 ; sys_platform == 'linux'\n"
    )
    got = [(e.kind, e.target_name()) for e in parsed.entries]
    assert got == [
        ("editable", "tensorflow"), ("editable", None), ("url", "tensorflow"), ("path", "tensorflow"),
        ("url", "tensorflow"), ("path", None), ("named", "tensorflow"),
    ]
    named = parsed.entries[-1].requirement
    assert named is not None and named.extras == {"and-cuda"} and str(named.marker) == 'sys_platform == "linux"'


def test_names_are_normalised() -> None:
    parsed = parse("TensorFlow\ntensorflow_gpu==2.11.0\nTF.Nightly\n")
    assert [e.name for e in parsed.entries] == ["tensorflow", "tensorflow-gpu", "tf-nightly"]


def test_per_requirement_options_and_bad_options() -> None:
    parsed = parse("tensorflow==2.21.0 --hash sha256:aaa --config-settings=k=v\nflask --bogus\n")
    assert parsed.entries[0].hashes == ("sha256:aaa",)
    assert parsed.entries[0].option_values("config-settings") == ["k=v"]
    assert parsed.entries[1].error


def test_edit_name_changes_only_the_name_and_drops_the_cuda_extra() -> None:
    parsed = parse('  TensorFlow[and-cuda, foo] >= 2.15 ; sys_platform == "linux"  # gpu\n')
    lines = reqedit.edit_name(parsed, parsed.entries[0], "tensorflow-cpu", drop_extras=["and-cuda"])
    assert lines == ['  tensorflow-cpu[foo] >= 2.15 ; sys_platform == "linux"  # gpu']
    parsed = parse("tensorflow[and-cuda]==2.21.0\n")
    assert reqedit.edit_name(parsed, parsed.entries[0], "tensorflow-cpu", ["and-cuda"]) == ["tensorflow-cpu==2.21.0"]


def test_with_hashes_keeps_the_pip_compile_layout() -> None:
    lines = ["tensorflow-cpu==2.21.0 \\", "    --hash=sha256:aaa \\", "    --hash=sha256:bbb"]
    assert reqedit.with_hashes(lines, ["sha256:ccc"]) == ["tensorflow-cpu==2.21.0 \\", "    --hash=sha256:ccc"]
    inline = ["tensorflow-cpu==2.21.0 --hash=sha256:aaa --hash=sha256:bbb  # pinned"]
    assert reqedit.with_hashes(inline, ["sha256:ccc"]) == ["tensorflow-cpu==2.21.0 --hash=sha256:ccc  # pinned"]
    assert reqedit.with_hashes(lines, []) == ["tensorflow-cpu==2.21.0"]


def test_render_replaces_only_the_edited_lines_and_adds_one_header_after_the_bom() -> None:
    raw = b"\xef\xbb\xbfflask\r\ntensorflow==2.21.0 \\\r\n    --hash=sha256:aaa\r\ngunicorn"
    parsed = parse(raw)
    index = next(i for i, e in enumerate(parsed.entries) if e.name == "tensorflow")
    lines = reqedit.with_hashes(reqedit.edit_name(parsed, parsed.entries[index], "tensorflow-cpu"), ["sha256:bbb"])
    out = parsed.render({index: lines}, header="# changed")
    assert out == (b"\xef\xbb\xbf# changed\r\nflask\r\ntensorflow-cpu==2.21.0 \\\r\n    --hash=sha256:bbb\r\n"
                   b"gunicorn")
    removed = parsed.render({index: None}, header="# changed")
    assert removed == b"\xef\xbb\xbf# changed\r\nflask\r\ngunicorn"


def test_header_goes_after_a_pep263_coding_line() -> None:
    parsed = parse("# -*- coding: utf-8 -*-\ntensorflow\n")
    out = parsed.render({1: ["tensorflow-cpu"]}, header="# changed")
    assert out == b"# -*- coding: utf-8 -*-\n# changed\ntensorflow-cpu\n"


def test_via_annotations() -> None:
    parsed = parse("tensorflow==2.21.0\n    # via\n    #   -r requirements.in\n    #   tf-keras\nflask==3.0\n"
                   "    # via -r requirements.in\n")
    assert reqedit.via(parsed, 0) == ["-r requirements.in", "tf-keras"]
    flask = next(i for i, e in enumerate(parsed.entries) if e.name == "flask")
    assert reqedit.via(parsed, flask) == ["-r requirements.in"]


def test_read_tree_follows_nested_files_relative_to_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "reqs").mkdir()
    (tmp_path / "requirements.txt").write_text("-r reqs/base.txt\n-c https://example.invalid/c.txt\n-r ../out.txt\n")
    (tmp_path / "reqs" / "base.txt").write_text("-c constraints.txt\nflask\n-r missing.txt\n")
    (tmp_path / "reqs" / "constraints.txt").write_text("tensorflow==2.21.0\n")
    (tmp_path.parent / "out.txt").write_text("tensorflow\n")
    tree = req.read_tree(tmp_path / "requirements.txt", tmp_path)
    assert [f.path.name for f in tree.files] == ["requirements.txt", "base.txt", "constraints.txt"]
    assert [f.constraint for f in tree.files] == [False, False, True]
    assert sorted(why for *_, why in tree.skipped) == [
        "it is a URL, so it cannot be changed at build time", "it is outside the app directory",
        "the file does not exist"]


def test_read_tree_rejects_a_file_that_includes_itself(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("-r a.txt\n")
    (tmp_path / "a.txt").write_text("-r requirements.txt\n")
    with pytest.raises(RequirementsError, match="includes itself"):
        req.read_tree(tmp_path / "requirements.txt", tmp_path)
