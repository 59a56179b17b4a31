"""Teacher training and labelling on a GPU: a Llama-class decoder teacher with LoRA adapters, through the same
library calls the CLI makes (``teacher.train.train`` with ``device="cuda"``, ``distill.label.label_pairs``).

    python bench/gpu_teacher.py --out DIR [--minutes 2] [--layers 16 --hidden 2048]

No weights can be downloaded here, so the backbone is a randomly initialised Llama of the given size with a BPE
tokenizer trained on the synthetic world's text: the figures are the speed of a model of that size (tokens/s,
labelled pairs/s, GPU memory) — its relevance quality is not what this measures. Writes
``gpu-teacher-<date>.json`` with the machine. ``--device cpu`` with a small ``--layers/--hidden`` checks the script
itself on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEARCHREL_PROGRESS", "0")


def llama_backbone(path: Path, texts: list[str], layers: int, hidden: int, vocab: int = 16000) -> Path:
    """A random Llama (decoder) and a BPE tokenizer trained on ``texts``, saved as a transformers checkpoint."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    heads = max(1, hidden // 128)
    cfg = LlamaConfig(vocab_size=fast.vocab_size, hidden_size=hidden, intermediate_size=int(hidden * 8 / 3) // 64 * 64,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 4),
                      max_position_embeddings=512, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                      pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def train_once(ds, backbone: Path, out: Path, device: str, minutes: float, batch: int, lora: int) -> dict:
    import torch

    from searchrel.teacher.config import LoraOptions, TeacherConfig, TrainConfig
    from searchrel.teacher.train import train

    cfg = TrainConfig(teacher=TeacherConfig(backbone=str(backbone), max_length=128, lora=LoraOptions(r=lora, alpha=2 * lora)),
                      max_minutes=minutes, batch_size=batch, epochs=50, eval_every=10_000, patience=100,
                      device=device, train_languages=["en"], fit_thresholds=False)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    train(ds, out, cfg)
    rec = json.loads((out / "train.json").read_text())
    res = {"device": device, "steps": rec["steps"], "seconds": rec["elapsed_s"], "tokens": rec["tokens"],
           "tokens_per_s": rec["tokens_per_s"], "batch_size": batch, "lora_rank": lora,
           "trainable_non_embedding_params": rec["trainable_non_embedding_params"]}
    if device.startswith("cuda"):
        res["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=2.0, help="GPU training budget")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lora", type=int, default=16)
    args = ap.parse_args()

    import torch

    from searchrel.annotate.logs import annotate
    from searchrel.annotate.text import TextConfig, build_item_texts
    from searchrel.data.synth import SynthConfig, synthesize
    from searchrel.distill.config import LabelConfig, SampleConfig
    from searchrel.distill.label import MANIFEST, label_pairs
    from searchrel.distill.sample import sample_pairs, save_pairs
    from searchrel.eval.evaluate import evaluate
    from searchrel.experiments.scorers import load_scorer

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this benchmark measures the GPU path (--device cpu to check the script)")
    args.out.mkdir(parents=True, exist_ok=True)
    ds, _ = annotate(synthesize(SynthConfig()))
    ds.save(args.out / "world")
    texts = build_item_texts(ds.items, TextConfig()).tolist() + ds.queries["text"].tolist()
    backbone = llama_backbone(args.out / "llama", texts, args.layers, args.hidden)
    from transformers import AutoModel

    n_params = sum(p.numel() for p in AutoModel.from_pretrained(backbone).parameters())
    trained = train_once(ds, backbone, args.out / "teacher", args.device, args.minutes, args.batch, args.lora)

    t = time.perf_counter()
    metrics = evaluate(ds, load_scorer(args.out / "teacher").predict(ds, "test")).overall
    eval_s = time.perf_counter() - t

    sample = SampleConfig(amplification=3, embed_share=0.0, random_share=0.4)
    pairs = sample_pairs(ds, sample, TextConfig())
    save_pairs(pairs, args.out / "pairs.parquet", ds, sample)
    labels = label_pairs(args.out / "teacher", args.out / "pairs.parquet", args.out / "labels",
                         LabelConfig(device=args.device, batch_size=256), dataset=ds)
    manifest = json.loads((labels / MANIFEST).read_text())

    result = {
        "benchmark": "gpu_teacher", "date": dt.date.today().isoformat(),
        "machine": {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "cpu_cores": os.cpu_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
                    "python": platform.python_version()},
        "backbone": {"kind": "Llama (random init)", "layers": args.layers, "hidden": args.hidden,
                     "parameters": n_params},
        "train": trained,
        "labelling": {"device": args.device, "pairs": manifest["n_pairs"], "pairs_per_s": manifest["pairs_per_s"],
                      "batch_size": 256},
        "eval_test_split_s": round(eval_s, 2), "test_metrics_random_backbone": metrics,
    }
    path = args.out / f"gpu-teacher-{result['date']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
