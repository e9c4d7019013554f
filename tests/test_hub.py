"""The Hugging Face step on its own: what it leaves behind when something inside it fails."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from slugslim.core.config import Config, VerifyConfig
from slugslim.core.context import FinishContext
from slugslim.finish.hub import cache, hub
from tests.hubserver import HubServer


def test_a_fault_inside_the_step_takes_out_what_it_added(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build = tmp_path / "build"
    site = build / ".heroku/python/lib/python3.11/site-packages"
    (site / "huggingface_hub-2.4.0.dist-info").mkdir(parents=True)
    (site / "huggingface_hub-2.4.0.dist-info/METADATA").write_text("Name: huggingface_hub\nVersion: 2.4.0\n")
    downloaded = build / ".slugslim/hf/hub/models--acme--tiny/blobs/abc"
    downloaded.parent.mkdir(parents=True)
    downloaded.write_bytes(b"weights")

    def fault(where: Path) -> None:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(cache, "tidy", fault)
    with HubServer() as server:
        ctx = FinishContext(build_dir=build, cache_dir=None, env={"HF_ENDPOINT": server.endpoint},
                            config=Config(verify=VerifyConfig(enabled=False)), python=Path(sys.executable),
                            site_packages=site)
        with pytest.raises(RuntimeError, match="the disk is full"):
            hub.run(ctx)
    assert not (build / ".slugslim/hf").joinpath("hub").exists()
    assert not (build / hub.PROFILE_SCRIPT).exists() and ctx.dyno_env == {}
    assert ctx.results.hub is not None and ctx.results.hub.status == "skipped"
