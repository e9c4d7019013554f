"""The stand-in Hub (tests/hubserver.py) against the real huggingface_hub client, in a process of its own
that sees only the stand-in (HF_ENDPOINT) and a fresh cache (HF_HOME)."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.hubserver import HubRepo, HubServer, client_env

TOKEN = "hf_stand_in_token"
WEIGHTS = bytes(range(256)) * 40
TINY = HubRepo("org/tiny", {"config.json": b'{"hidden_size": 8}\n', "model.safetensors": WEIGHTS,
                            "tokenizer/vocab.txt": b"[PAD]\n[UNK]\n", "README.md": b"# tiny\n"},
               revisions=("main", "v1"))
GATED = HubRepo("org/gated", {"config.json": b"{}\n"}, gated=True)

# Evaluates each argument with the client's functions at hand; an exception becomes
# {"error": its class and base classes, "status": the HTTP status}.
CLIENT = """
import importlib.util, json, sys
from huggingface_hub import HfApi, hf_hub_download, list_repo_files, model_info, snapshot_download
out = []
for expression in sys.argv[1:]:
    try:
        out.append(eval(expression))
    except Exception as error:
        response = getattr(error, "response", None)
        out.append({"error": [c.__name__ for c in type(error).__mro__],
                    "status": getattr(response, "status_code", None)})
print(json.dumps(out))
"""


def client(hub: HubServer, home: Path, *expressions: str, token: str | None = None, offline: bool = False) -> Any:
    env = client_env(hub, home, token)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run([sys.executable, "-c", CLIENT, *expressions], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    return results[0] if len(expressions) == 1 else results


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer([TINY, GATED], token=TOKEN) as server:
        yield server


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "hf"


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_hf_hub_download_fills_the_standard_cache_layout(hub: HubServer, home: Path) -> None:
    config, weights, has_xet = client(hub, home, "hf_hub_download('org/tiny', 'config.json')",
                                      "hf_hub_download('org/tiny', 'model.safetensors')",
                                      "importlib.util.find_spec('hf_xet') is not None")
    repo = home / "hub" / "models--org--tiny"
    assert config == str(repo / "snapshots" / TINY.sha / "config.json")
    assert (repo / "refs" / "main").read_text() == TINY.sha
    # A git file's blob is named by its git sha1, an LFS file's by its sha256: the ETags sent.
    assert Path(config).readlink() == Path("../../blobs") / git_sha1(TINY.files["config.json"])
    assert Path(weights).readlink() == Path("../../blobs") / hashlib.sha256(WEIGHTS).hexdigest()
    assert Path(weights).read_bytes() == WEIGHTS
    # hf_xet is installed, yet the weights came over plain HTTP: the stand-in offers no Xet.
    assert has_xet
    assert hub.count("GET", "/org/tiny/resolve/main/model.safetensors") == 1
    # What the downloads cost: the two files' bytes, once each; a HEAD carries none.
    assert hub.downloaded() == len(TINY.files["config.json"]) + len(WEIGHTS)
    assert all(r.sent == 0 for r in hub.requests if r.method == "HEAD")


def test_snapshot_download_fetches_only_the_allowed_files(hub: HubServer, home: Path) -> None:
    folder = Path(client(hub, home, "snapshot_download('org/tiny', allow_patterns=['*.json', 'tokenizer/*'])"))
    assert folder == home / "hub" / "models--org--tiny" / "snapshots" / TINY.sha
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "config.json", "tokenizer/vocab.txt"]
    assert hub.count("GET", "/org/tiny/resolve/") == 2
    assert hub.count("", "/api/models/org/tiny/tree/") == 1


def test_repo_info_and_listings_describe_the_commit(hub: HubServer, home: Path) -> None:
    sha, siblings, files, root, missing, paths, discussions, v1 = client(
        hub, home, "model_info('org/tiny').sha",
        "[(s.rfilename, s.size, s.lfs and s.lfs.sha256) for s in model_info('org/tiny', files_metadata=True).siblings]",
        "list_repo_files('org/tiny')",
        "[(type(e).__name__, e.path) for e in HfApi().list_repo_tree('org/tiny')]",
        "list(HfApi().list_repo_tree('org/tiny', 'additional_chat_templates'))",
        "[e.path for e in HfApi().get_paths_info('org/tiny', ['tokenizer', 'README.md', 'nope'])]",
        "list(HfApi().get_repo_discussions('org/tiny'))",
        "hf_hub_download('org/tiny', 'README.md', revision='v1')")
    assert sha == TINY.sha
    assert ["model.safetensors", len(WEIGHTS), hashlib.sha256(WEIGHTS).hexdigest()] in siblings
    assert ["config.json", len(TINY.files["config.json"]), None] in siblings
    assert files == sorted(TINY.files)
    assert ["RepoFolder", "tokenizer"] in root and ["RepoFile", "tokenizer/vocab.txt"] not in root
    # transformers lists this folder for chat templates and takes EntryNotFound as "none".
    assert "EntryNotFoundError" in missing["error"]
    assert sorted(paths) == ["README.md", "tokenizer"]
    assert discussions == []
    assert (home / "hub" / "models--org--tiny" / "refs" / "v1").read_text() == TINY.sha
    assert Path(v1).read_bytes() == TINY.files["README.md"]


def test_a_gated_repo_needs_the_servers_token(hub: HubServer, home: Path) -> None:
    anonymous, wrong = client(hub, home, "hf_hub_download('org/gated', 'config.json')",
                              "hf_hub_download('org/gated', 'config.json', token='hf_wrong')")
    assert anonymous["error"][0] == "GatedRepoError" and anonymous["status"] == 401
    assert wrong["error"][0] == "HfHubHTTPError" and wrong["status"] == 401
    hub.requests.clear()
    path = client(hub, home, "hf_hub_download('org/gated', 'config.json')", token=TOKEN)
    assert Path(path).read_bytes() == GATED.files["config.json"]
    assert hub.requests and all(request.has_auth for request in hub.requests)


def test_missing_repo_file_and_revision_raise_the_clients_errors(hub: HubServer, home: Path) -> None:
    repo, info, entry, revision, anonymous = client(
        hub, home, "hf_hub_download('org/none', 'config.json')", "model_info('org/none')",
        "hf_hub_download('org/tiny', 'nope.json')", "hf_hub_download('org/tiny', 'config.json', revision='v9')",
        "hf_hub_download('org/none', 'config.json', token=False)", token=TOKEN)
    assert repo["error"][0] == info["error"][0] == "RepositoryNotFoundError" and repo["status"] == 404
    # Without a token the Hub answers 401 for a repo it does not have, as it does for a private one.
    assert anonymous["error"][0] == "RepositoryNotFoundError" and anonymous["status"] == 401
    assert "EntryNotFoundError" in entry["error"] and entry["status"] == 404
    assert revision["error"][0] == "RevisionNotFoundError" and revision["status"] == 404


def test_cached_files_load_offline_without_a_request(hub: HubServer, home: Path) -> None:
    downloaded = client(hub, home, "snapshot_download('org/tiny')")
    hub.requests.clear()
    offline = client(hub, home, "snapshot_download('org/tiny')", "hf_hub_download('org/tiny', 'config.json')",
                     offline=True)
    assert offline == [downloaded, f"{downloaded}/config.json"]
    assert hub.requests == []


def test_down_refuses_connections_and_the_client_falls_back_to_its_cache(hub: HubServer, home: Path) -> None:
    downloaded = client(hub, home, "hf_hub_download('org/tiny', 'config.json')")
    hub.down()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", urlsplit(hub.endpoint).port or 0), timeout=2)
    assert client(hub, home, "hf_hub_download('org/tiny', 'config.json')") == downloaded
    hub.up()
    hub.requests.clear()
    assert client(hub, home, "hf_hub_download('org/tiny', 'config.json')") == downloaded
    assert hub.count("HEAD", "/org/tiny/resolve/main/config.json") == 1


def test_a_new_commit_on_main_is_what_the_next_download_gets(hub: HubServer, home: Path) -> None:
    first = client(hub, home, "hf_hub_download('org/tiny', 'config.json')")
    sha = hub.commit("org/tiny", {"config.json": b'{"hidden_size": 16}\n'})
    assert sha != TINY.sha and hub.sha("org/tiny") == sha and hub.sha("org/tiny", "v1") == TINY.sha
    second, old = client(hub, home, "hf_hub_download('org/tiny', 'config.json')",
                         f"hf_hub_download('org/tiny', 'config.json', revision='{TINY.sha}')")
    assert (home / "hub" / "models--org--tiny" / "refs" / "main").read_text() == sha
    assert second == str(home / "hub" / "models--org--tiny" / "snapshots" / sha / "config.json")
    assert Path(second).read_bytes() == b'{"hidden_size": 16}\n'
    assert old == first and Path(first).read_bytes() == TINY.files["config.json"]
