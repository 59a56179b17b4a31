"""The teacher: a cross-encoder over ``query [SEP] item text`` with an MLP head giving one logit per grade.

Any transformers backbone works: encoders are pooled by [CLS] or mean, decoder LLMs by their last
non-padding token (the only one that has seen the whole pair). Saved as ``teacher.json`` (the config,
enough to rebuild it) plus ``model.safetensors``; the backbone's tokenizer is saved beside them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from searchrel.io import read_config
from searchrel.models.backbone import build_backbone, pool, quiet_transformers, transformer_layers
from searchrel.models.device import resolve_device
from searchrel.models.encode import Encoder, cpu_has_bf16
from searchrel.teacher.config import LoraOptions, TeacherConfig

CONFIG_FILE = "teacher.json"
WEIGHTS_FILE = "model.safetensors"


class CrossEncoder(nn.Module):
    """Backbone + pooling + MLP head → logits over the grades of the scale."""

    def __init__(self, config: TeacherConfig, backbone: nn.Module):
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.fast: Encoder | None = None  # set by load_cross_encoder: the backbone on the shared fast path
        hidden = backbone.config.hidden_size + self.n_features
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(hidden, config.head_hidden), nn.GELU(),
                                  nn.Dropout(config.dropout), nn.Linear(config.head_hidden, config.scale.n_grades))

    @property
    def n_features(self) -> int:
        """Pair features beside the pooled text: the zero-shot cosine where asked for."""
        return int(self.config.zero_shot_feature)

    @property
    def pooling(self) -> str:
        if self.config.pooling != "auto":
            return self.config.pooling
        return "last" if self.config.is_decoder else "mean"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                features: torch.Tensor | None = None) -> torch.Tensor:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        pooled = pool(out.last_hidden_state, attention_mask, self.pooling).float()
        if self.n_features:
            if features is None or features.shape != (pooled.shape[0], self.n_features):
                raise ValueError(f"this teacher needs {self.n_features} pair feature(s) per pair")
            pooled = torch.cat([pooled, features.float()], -1)
        return self.head(pooled)

    # -- persistence ------------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Only what training changes (frozen tables stay in the backbone files): small checkpoints."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if k in names}

    def save(self, out: Path, tokenizer=None) -> Path:
        """Write the full model (backbone included, so it loads without the cache) atomically enough:
        weights first, config last — a directory with ``teacher.json`` is complete."""
        out.mkdir(parents=True, exist_ok=True)
        model = self.merged_for_saving()
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(_untie(state), str(out / WEIGHTS_FILE))
        model.backbone.config.save_pretrained(out / "backbone")
        if tokenizer is not None:
            tokenizer.save_pretrained(out / "backbone")
        (out / CONFIG_FILE).write_text(self.config.model_dump_json(indent=2) + "\n")
        return out

    def merged_for_saving(self) -> "CrossEncoder":
        if self.config.lora is None or not hasattr(self.backbone, "merge_and_unload"):
            return self
        merged = CrossEncoder(self.config.model_copy(update={"lora": None}), self.backbone.merge_and_unload())
        merged.head = self.head
        return merged


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage (tied embeddings): give each tensor its own copy."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.setdefault(ptr, k)
    return out


def new_teacher(config: TeacherConfig, seed: int = 0) -> tuple[CrossEncoder, object]:
    """A fresh teacher: pretrained backbone, randomly initialised head (seeded)."""
    backbone, tokenizer, info, is_decoder = build_backbone(config.backbone)
    config = config.model_copy(update={"is_decoder": is_decoder, "query_prefix": info.query_prefix,
                                       "passage_prefix": info.passage_prefix})
    torch.manual_seed(seed)
    if config.freeze_embeddings:
        backbone.get_input_embeddings().weight.requires_grad_(False)
    if config.freeze_layers:
        for layer in transformer_layers(backbone)[: config.freeze_layers]:
            layer.requires_grad_(False)
    if config.lora is not None:
        backbone = _with_lora(backbone, config.lora)
    return CrossEncoder(config, backbone), tokenizer


def _with_lora(backbone, opts: LoraOptions):
    try:
        from peft import LoraConfig, get_peft_model  # peft: the llm extra
    except ImportError:
        raise ImportError("LoRA needs peft: pip install 'searchrel[llm]' (or pip install peft)") from None
    return get_peft_model(backbone, LoraConfig(r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout,
                                               target_modules=opts.target_modules))


def load_cross_encoder(path: str | Path, device: str = "cpu", fast: bool | None = None) -> tuple[CrossEncoder, object]:
    """Load a saved cross-encoder teacher (and its tokenizer) for prediction, on ``device`` (auto, cpu, cuda:N).

    ``fast`` (default: where it pays, i.e. an encoder backbone without pair features on a bf16-capable CPU) hands
    the backbone to the shared fast path (bf16 TorchScript with shape buckets, ``models.encode``): the model is then
    for inference only. GPUs and decoder LLMs run eager under autocast."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer  # heavy: loaded when a model is

    path = Path(path)
    config = TeacherConfig.model_validate(read_config(path, CONFIG_FILE, "teacher"))
    quiet_transformers()
    hf_config = AutoConfig.from_pretrained(path / "backbone")
    backbone = AutoModel.from_config(hf_config, dtype=torch.float32)
    model = CrossEncoder(config.model_copy(update={"lora": None}), backbone)
    missing, unexpected = model.load_state_dict(load_file(str(path / WEIGHTS_FILE)), strict=False)
    missing = [m for m in missing if not _is_tied(m, backbone)]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model = model.eval().to(resolve_device(device))
    tokenizer = AutoTokenizer.from_pretrained(path / "backbone")
    eligible = (next(model.parameters()).device.type == "cpu" and not config.is_decoder and model.n_features == 0
                and cpu_has_bf16())
    if fast if fast is not None else eligible:
        model.fast = Encoder.for_module(model.backbone, tokenizer.pad_token_id, pooling=model.pooling,
                                        precision="bf16")
    return model, tokenizer


def _is_tied(name: str, backbone) -> bool:
    return bool(getattr(backbone.config, "tie_word_embeddings", False)) and "lm_head" in name
