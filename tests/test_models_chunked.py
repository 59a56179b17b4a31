"""EmbeddingGemma's provisioning path on a tiny EmbeddingGemma-shaped model: a zip split over the versions of one
package, verified against each wheel's RECORD and a pinned hash, unpacked atomically into the model cache."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from searchrel.models import chunked, registry
from searchrel.models.chunked import ChunkedSource
from searchrel.models.registry import Backbone, ModelError
from searchrel.models.testing import make_tiny_embeddinggemma


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _publish(model: Path, wheels: Path, n: int = 3) -> ChunkedSource:
    """Zip ``model`` under model_download/, cut it into ``n`` chunks, one fake wheel per version."""
    buf = wheels / "whole.zip"
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted(model.rglob("*")):
            if f.is_file():
                z.write(f, "model_download/" + str(f.relative_to(model)))
        z.writestr("model_download/notebook.ipynb", "{}")
    data = buf.read_bytes()
    buf.unlink()
    versions = tuple(f"0.1.{i}" for i in range(1, n + 1))
    size = -(-len(data) // n)
    for i, v in enumerate(versions):
        chunk = data[i * size:(i + 1) * size]
        with zipfile.ZipFile(wheels / f"tiny_chunks-{v}-py3-none-any.whl", "w") as w:
            w.writestr("tiny_chunks/chunk.bin", chunk)
            w.writestr(f"tiny_chunks-{v}.dist-info/RECORD",
                       f"tiny_chunks/chunk.bin,{_record_hash(chunk)},{len(chunk)}\n")
    return ChunkedSource(package="tiny-chunks", versions=versions, zip_sha256=hashlib.sha256(data).hexdigest(),
                         folder="model_download", skip=("notebook.ipynb",))


@pytest.fixture
def published(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SEARCHREL_HOME", str(home))
    model = make_tiny_embeddinggemma(tmp_path / "src-model")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    source = _publish(model, wheels)
    monkeypatch.setenv(chunked.WHEELS_ENV, str(wheels))
    b = Backbone(name="tiny-eg", description="tiny", licence="Gemma Terms of Use", source_package="tiny-chunks",
                 install="searchrel models pull tiny-eg", build=lambda out: chunked.build_chunked(source, out),
                 query_prefix="task: search result | query: ", passage_prefix="title: none | text: ",
                 pinned_version="0.1.1-0.1.3", auto_pull=False)
    monkeypatch.setitem(registry.REGISTRY, "tiny-eg", b)
    return model, wheels, home


def test_pull_assembles_verifies_and_encodes_like_the_source(published):
    from searchrel.models.encode import Encoder

    model, _, home = published
    with pytest.raises(ModelError, match="searchrel models pull tiny-eg"):  # never downloaded behind a user's back
        registry.resolve_model("tiny-eg")
    path = registry.pull("tiny-eg")
    assert path == home / "models" / "tiny-eg" and registry.verify(path) == []
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["source"]["version"] == "0.1.1-0.1.3" and manifest["source"]["files_unpacked"] >= 8
    assert not (path / "notebook.ipynb").exists() and (path / "2_Dense" / "model.safetensors").is_file()
    assert registry.resolve_model("tiny-eg") == path  # provisioned: resolves without rebuilding
    texts = ["red table", "vestido azul"]
    a = Encoder(path, registry.REGISTRY["tiny-eg"], precision="fp32").encode(texts, kind="query")
    b = Encoder(model, registry.backbone_for(str(model)), precision="fp32").encode(texts, kind="query")
    assert np.allclose(a, b, atol=1e-6)


def test_a_corrupt_chunk_or_a_replaced_version_is_refused(published, tmp_path):
    _, wheels, home = published
    wheel = sorted(wheels.glob("*.whl"))[1]
    with zipfile.ZipFile(wheel) as w:
        record = w.read(next(n for n in w.namelist() if n.endswith("RECORD")))
        chunk = bytearray(w.read("tiny_chunks/chunk.bin"))
    chunk[10] ^= 0xFF
    with zipfile.ZipFile(wheel, "w") as w:  # the chunk no longer matches its RECORD
        w.writestr("tiny_chunks/chunk.bin", bytes(chunk))
        w.writestr(wheel.name.split("-py3")[0] + ".dist-info/RECORD", record)
    with pytest.raises(ModelError, match="does not match the wheel's RECORD"):
        registry.pull("tiny-eg")
    with zipfile.ZipFile(wheel, "w") as w:  # consistent with its RECORD, but not the pinned bytes
        w.writestr("tiny_chunks/chunk.bin", bytes(chunk))
        w.writestr(wheel.name.split("-py3")[0] + ".dist-info/RECORD",
                   f"tiny_chunks/chunk.bin,{_record_hash(bytes(chunk))},{len(chunk)}\n")
    with pytest.raises(ModelError, match="expected"):
        registry.pull("tiny-eg")
    assert not (home / "models" / "tiny-eg").exists()
    assert not [p for p in (home / "models").iterdir() if p.name.startswith(".")]  # nothing half-built left


def test_a_missing_wheel_names_itself(published):
    _, wheels, _ = published
    sorted(wheels.glob("*.whl"))[2].unlink()
    with pytest.raises(ModelError, match=r"missing wheel tiny_chunks-0\.1\.3"):
        registry.pull("tiny-eg")


def test_embeddinggemma_is_registered_with_its_prompts_and_pinned_source():
    b = registry.REGISTRY["embeddinggemma-300m"]
    assert b.query_prefix == "task: search result | query: " and b.passage_prefix == "title: none | text: "
    assert not b.auto_pull and b.pinned_version == "0.2.1-0.2.25"
    src = chunked.EMBEDDINGGEMMA_300M
    assert len(src.versions) == 25 and src.versions[0] == "0.2.1" and src.versions[-1] == "0.2.25"
