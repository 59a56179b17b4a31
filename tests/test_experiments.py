"""The backbone comparison and the feature ablation, end to end on a small synthetic world and a tiny backbone."""

import json

import matplotlib.pyplot as plt
import pytest
from typer.testing import CliRunner

from searchrel.annotate.logs import annotate
from searchrel.cli import app
from searchrel.data.synth import SynthConfig, synthesize


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    ds = synthesize(SynthConfig(n_items=150, n_queries=40, n_users=60, n_judged_pairs=300, n_searches=800))
    ds, _ = annotate(ds)
    return ds.save(tmp_path_factory.mktemp("world") / "ds")


def test_compare_cli_writes_table_chart_and_notes_skipped_backbones(world, tiny_bert, tmp_path):
    out = tmp_path / "cmp"
    res = CliRunner().invoke(app, ["compare", str(world), "--out", str(out), "--backbones", f"{tiny_bert},nobody/no-model",
                                   "--zero-shot-model", str(tiny_bert), "--epochs", "1", "--fields", "title,image_caption"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "comparison.json").read_text())
    systems = [k for k in data if k != "notes"]
    assert systems[0].startswith("BM25") and systems[1] == f"zero-shot {tiny_bert}" and systems[2] == f"teacher {tiny_bert}"
    assert data[systems[2]]["overall"]["qwk"] is not None and data[systems[0]]["overall"]["qwk"] is None
    assert any("nobody/no-model skipped" in n for n in data["notes"])
    height, width = plt.imread(out / "comparison.png").shape[:2]
    assert height >= 200 and width >= 300  # a real chart, not an empty file
    assert "| teacher" in (out / "comparison.md").read_text()
    # a rerun reuses the finished teacher instead of training again
    mtime = (out / f"teacher-{str(tiny_bert).replace('/', '-')}" / "model.safetensors").stat().st_mtime
    res = CliRunner().invoke(app, ["compare", str(world), "--out", str(out), "--backbones", str(tiny_bert),
                                   "--zero-shot-model", str(tiny_bert), "--epochs", "1", "--fields", "title,image_caption"])
    assert res.exit_code == 0 and "reusing" in res.output
    assert (out / f"teacher-{str(tiny_bert).replace('/', '-')}" / "model.safetensors").stat().st_mtime == mtime


def test_ablate_grows_fields_and_skips_missing_ones(world, tiny_bert, tmp_path):
    from searchrel.data.dataset import load_dataset

    ds = load_dataset(world)
    ds.items["board_titles"] = None  # a dataset without boards: that step is skipped and said so
    ds.save(tmp_path / "noboards")
    cfg = tmp_path / "train.json"
    cfg.write_text(json.dumps({"epochs": 1, "batch_size": 16, "teacher": {"backbone": str(tiny_bert), "max_length": 48}}))
    res = CliRunner().invoke(app, ["ablate", str(tmp_path / "noboards"), "--out", str(tmp_path / "abl"), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "has no board_titles; step skipped" in res.output
    data = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    teachers = [k for k in data if k.startswith("teacher:")]
    assert teachers == ["teacher: caption", "teacher: + title, description", "teacher: + engaged queries"]
    fields = json.loads((tmp_path / "abl" / "step3" / "teacher.json").read_text())["text"]["fields"]
    assert fields == ["image_caption", "title", "description", "engaged_queries"]
    assert (tmp_path / "abl" / "ablation-curve.png").exists()
