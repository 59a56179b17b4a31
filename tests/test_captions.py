"""The caption stage end to end on tiny randomly initialised captioners (a vision-encoder-decoder, a BLIP) and
images drawn here: items with an image get a caption, the rest keep theirs, provenance is recorded, and an
interrupted run resumes (kill -9 included) with only the remaining images captioned."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from searchrel.annotate.captions import CaptionConfig, Captioner, caption_dataset, checkpoint_dir
from searchrel.cli import app
from searchrel.data.dataset import Dataset, DatasetError, load_dataset
from searchrel.io import sha256_tree

WORDS = "a photo of red blue green table chair dress lamp on the wooden".split()
DRAWN = {"i1": ((200, 30, 30), "rectangle"), "i2": ((20, 40, 220), "ellipse"), "i3": ((240, 240, 240), "ellipse"),
         "i4": ((30, 160, 60), "rectangle")}  # i5 has no image


def save_tokenizer(path):
    """A word-level tokenizer over ``WORDS`` with the special tokens the tiny models use."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(path)
    return len(vocab)


def make_tiny_captioner(path):
    """A ViT encoder + GPT-2 decoder (one layer each, 32 wide) with a word-level tokenizer, saved like a hub model."""
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessorPil,
    )

    n_vocab = save_tokenizer(path)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(path)
    # a wide initialisation (0.5) so that the random model's words depend on the image
    encoder = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, initializer_range=0.5)
    decoder = GPT2Config(vocab_size=n_vocab, n_positions=64, n_embd=32, n_layer=1, n_head=2, bos_token_id=1,
                         eos_token_id=2, pad_token_id=0, initializer_range=0.5)
    torch.manual_seed(2)
    model = VisionEncoderDecoderModel(VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder))
    gen = model.generation_config
    gen.decoder_start_token_id, gen.pad_token_id, gen.eos_token_id, gen.min_new_tokens = 1, 0, 2, 2
    model.save_pretrained(path)
    return path


def make_tiny_blip(path):
    """A BLIP captioner (one-layer vision and text towers, 32 wide) with the same tokenizer."""
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessorPil

    n_vocab = save_tokenizer(path)
    BlipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(path)
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
             "initializer_range": 0.5}
    text = tower | {"vocab_size": n_vocab, "encoder_hidden_size": 32, "max_position_embeddings": 64,
                    "bos_token_id": 1, "eos_token_id": 2, "sep_token_id": 2, "pad_token_id": 0}
    torch.manual_seed(2)
    config = BlipConfig(text_config=text, vision_config=tower | {"image_size": 32, "patch_size": 8}, projection_dim=32)
    BlipForConditionalGeneration(config).save_pretrained(path)
    return path


def draw_images(folder, drawn=DRAWN, suffix=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    for item_id, (colour, shape) in drawn.items():
        im = Image.new("RGB", (48, 40), (128, 128, 128))
        getattr(ImageDraw.Draw(im), shape)((6, 6, 40, 34), fill=colour)
        im.save(folder / f"{item_id}{suffix}")
    return folder


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    return make_tiny_captioner(tmp_path_factory.mktemp("models") / "tiny-captioner")


@pytest.fixture
def setup(tiny, tmp_path):
    """The tiny dataset saved, images for i1..i4 (i2 as an upper-case .JPG), a stray image and a text file."""
    tiny.save(tmp_path / "ds")
    images = draw_images(tmp_path / "images", {k: v for k, v in DRAWN.items() if k != "i2"})
    draw_images(images, {"i2": DRAWN["i2"]}, suffix=".JPG")
    draw_images(images, {"not-an-item": DRAWN["i1"]})
    (images / "notes.txt").write_text("not an image")
    return tmp_path / "ds", images


def captions_of(path):
    return load_dataset(path).items.set_index("item_id")["image_caption"].to_dict()


def test_cli_captions_items_with_images_and_keeps_the_rest(setup, captioner, tiny):
    ds, images = setup
    res = CliRunner().invoke(app, ["annotate", "captions", str(ds), "--images", str(images), "--model",
                                   str(captioner), "--batch-size", "3", "--max-new-tokens", "6"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "captioned 4 of 5 items" in said and "1 without an image" in said
    after = load_dataset(ds)
    caps = after.items.set_index("item_id")["image_caption"]
    for i in DRAWN:
        assert caps[i] and set(caps[i].split()) <= set(WORDS), caps[i]  # decoded words of the model's vocabulary
        assert caps[i] != tiny.items.set_index("item_id").loc[i, "image_caption"]
    assert len({caps[i] for i in DRAWN}) > 1  # the caption depends on the image
    assert caps["i5"] == "a wooden table"  # no image: kept as it was
    other = [c for c in tiny.items.columns if c != "image_caption"]
    assert after.items[other].equals(tiny.items[other]) and after.judgments.equals(tiny.judgments)
    prov = json.loads((ds / "dataset.json").read_text())["provenance"]["image_caption"]
    assert prov["model"] == str(captioner) and prov["model_sha256"] == sha256_tree(captioner)
    assert prov["model_type"] == "vision-encoder-decoder" and prov["generation"]["max_new_tokens"] == 6
    assert prov["counts"]["captioned"] == 4 and prov["counts"]["without_image"] == 1
    assert prov["counts"]["replaced"] == 3 and prov["counts"]["unmatched_files"] == 1  # i4 had no caption
    assert prov["device"] == ("cuda" if torch.cuda.is_available() else "cpu") and prov["versions"]["transformers"]
    assert not checkpoint_dir(ds).exists()
    res = CliRunner().invoke(app, ["annotate", str(ds), "--exclude-split", ""])  # the older form: annotate logs
    assert res.exit_code == 0, res.output
    assert load_dataset(ds).info.provenance["image_caption"] == prov  # later saves keep it


def test_a_blip_model_captions_the_same_way(setup, tmp_path):
    ds, images = setup
    blip = make_tiny_blip(tmp_path / "tiny-blip")
    report = caption_dataset(load_dataset(ds), images, blip, config=CaptionConfig(max_new_tokens=6))
    caps = captions_of(ds)
    assert report.captioned == 4 and all(set(caps[i].split()) <= set(WORDS) for i in DRAWN)
    assert load_dataset(ds).info.provenance["image_caption"]["model_type"] == "blip"


def test_batch_size_and_only_missing(setup, captioner, tmp_path):
    ds, images = setup
    cfg = CaptionConfig(max_new_tokens=6)
    caption_dataset(load_dataset(ds), images, captioner, tmp_path / "b1", cfg.model_copy(update={"batch_size": 1}))
    caption_dataset(load_dataset(ds), images, captioner, tmp_path / "b4", cfg.model_copy(update={"batch_size": 4}))
    one, four = captions_of(tmp_path / "b1"), captions_of(tmp_path / "b4")
    assert one == four
    first = load_dataset(tmp_path / "b1").info.provenance["image_caption"]
    r = caption_dataset(load_dataset(tmp_path / "b1"), images, captioner,
                        config=cfg.model_copy(update={"only_missing": True}))
    assert (r.captioned, r.kept_existing, r.generated) == (0, 4, 0) and captions_of(tmp_path / "b1") == one
    assert load_dataset(tmp_path / "b1").info.provenance["image_caption"]["earlier"] == [first]
    r = caption_dataset(load_dataset(ds), images, captioner, tmp_path / "missing",
                        cfg.model_copy(update={"only_missing": True}))
    assert (r.captioned, r.kept_existing, r.generated) == (1, 3, 1)
    caps = captions_of(tmp_path / "missing")
    assert caps["i4"] == one["i4"]  # the only item with an image and no caption
    assert caps["i1"] == "a photo of a red table"
    assert captions_of(ds)["i1"] == "a photo of a red table"  # written to --out: the input is untouched


def test_interrupted_run_resumes_where_it_stopped(setup, captioner, tmp_path, monkeypatch):
    ds, images = setup
    cfg = CaptionConfig(batch_size=2, max_new_tokens=6)
    caption_dataset(load_dataset(ds), images, captioner, tmp_path / "reference", cfg)

    calls = []
    real_call = Captioner.__call__

    def failing_second_batch(self, batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory (injected)")
        return real_call(self, batch)

    monkeypatch.setattr(Captioner, "__call__", failing_second_batch)
    with pytest.raises(RuntimeError, match="injected"):
        caption_dataset(load_dataset(ds), images, captioner, config=cfg)
    assert captions_of(ds)["i1"] == "a photo of a red table"  # the dataset is written only at the end
    rows = checkpoint_dir(ds) / "captions.jsonl"
    assert [json.loads(line)["item_id"] for line in rows.read_text().splitlines()] == ["i1", "i2"]
    with open(rows, "a") as f:
        f.write('{"item_id": "i3", "capt')  # what a kill in the middle of a write leaves

    calls.clear()
    monkeypatch.setattr(Captioner, "__call__", lambda self, batch: calls.append(len(batch)) or real_call(self, batch))
    report = caption_dataset(load_dataset(ds), images, captioner, config=cfg)
    assert calls == [2] and (report.resumed, report.generated, report.captioned) == (2, 2, 4)  # i3, i4 only
    assert captions_of(ds) == captions_of(tmp_path / "reference")
    assert not checkpoint_dir(ds).exists()


@pytest.mark.integration
def test_kill9_during_a_batch_loses_no_finished_batch(setup, captioner, tmp_path):
    ds, images = setup
    cfg = CaptionConfig(batch_size=1, max_new_tokens=6)
    caption_dataset(load_dataset(ds), images, captioner, tmp_path / "reference", cfg)
    script = textwrap.dedent(f"""
        import os, signal
        from searchrel.annotate.captions import CaptionConfig, Captioner, caption_dataset
        from searchrel.data.dataset import load_dataset
        real, calls = Captioner.__call__, []
        def call(self, batch):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, batch)
        Captioner.__call__ = call
        caption_dataset(load_dataset({str(ds)!r}), {str(images)!r}, {str(captioner)!r},
                        config=CaptionConfig(batch_size=1, max_new_tokens=6))
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False, env={**os.environ, "SEARCHREL_PROGRESS": "0"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    report = caption_dataset(load_dataset(ds), images, captioner, config=cfg)
    assert (report.resumed, report.generated) == (2, 2)
    assert captions_of(ds) == captions_of(tmp_path / "reference")


def test_unreadable_images_stop_the_run_or_are_counted(setup, captioner, tmp_path):
    ds, images = setup
    (images / "i3.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cfg = CaptionConfig(batch_size=2, max_new_tokens=6)
    with pytest.raises(ValueError, match=r"i3\.png: not a readable image .*--skip-bad"):
        caption_dataset(load_dataset(ds), images, captioner, config=cfg)
    res = CliRunner().invoke(app, ["annotate", "captions", str(ds), "--images", str(images), "--model",
                                   str(captioner), "--batch-size", "2", "--max-new-tokens", "6", "--skip-bad"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "1 unreadable images skipped" in said and "captioned 3 of 5 items" in said
    prov = json.loads((ds / "dataset.json").read_text())["provenance"]["image_caption"]
    assert prov["counts"]["not_captioned"] == 1 and prov["unreadable_examples"] == ["i3.png"]
    assert captions_of(ds)["i3"] == "a photo of a red wooden table"  # kept as it was


def test_bad_input_is_one_clear_error(setup, captioner, tiny_bert, tmp_path):
    ds, images = setup

    def run(*args):
        res = CliRunner().invoke(app, ["annotate", "captions", str(ds), *args])
        assert res.exit_code == 2, res.output
        return " ".join(res.output.split())

    assert "no such images directory" in run("--images", str(tmp_path / "nowhere"), "--model", str(captioner))
    assert "unknown model" in run("--images", str(images), "--model", str(tmp_path / "no-model"))
    assert "not an image-to-text model" in run("--images", str(images), "--model", str(tiny_bert))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no image in" in run("--images", str(empty), "--model", str(captioner))
    draw_images(images, {"i1": DRAWN["i1"]}, suffix=".webp")
    assert "item 'i1' has two images" in run("--images", str(images), "--model", str(captioner))
    (images / "i1.webp").unlink()
    assert "dtype" in run("--images", str(images), "--model", str(captioner), "--dtype", "float8")

    no_items = load_dataset(ds)
    no_items = Dataset(no_items.info, no_items.items.iloc[:0], no_items.queries, no_items.judgments.iloc[:0])
    with pytest.raises(DatasetError, match="no items"):
        caption_dataset(no_items, images, captioner, tmp_path / "out")


def test_a_checkpoint_of_other_settings_is_not_mixed_in(setup, captioner, monkeypatch):
    ds, images = setup
    monkeypatch.setattr(Captioner, "__call__", lambda self, batch: (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(RuntimeError, match="stop"):
        caption_dataset(load_dataset(ds), images, captioner, config=CaptionConfig(num_beams=1))
    with pytest.raises(FileExistsError, match="another num_beams"):
        caption_dataset(load_dataset(ds), images, captioner, config=CaptionConfig(num_beams=2))
