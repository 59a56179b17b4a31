"""The teacher: a cross-encoder over ``query [SEP] item text`` with an MLP head giving one logit per grade.

Any transformers backbone works: encoders are pooled by [CLS] or mean, decoder LLMs by their last
non-padding token (the only one that has seen the whole pair). Saved as ``teacher.json`` (the config,
enough to rebuild it) plus ``model.safetensors``; the backbone's tokenizer is saved beside them.
"""

from __future__ import annotations

import json
from pathlib import Path
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from searchrel.data.dataset import Scale
from searchrel.teacher.config import LoraOptions, TeacherConfig

CONFIG_FILE = "teacher.json"
WEIGHTS_FILE = "model.safetensors"


def _is_decoder(hf_config) -> bool:
    return bool(getattr(hf_config, "is_decoder", False)) or any(
        a.endswith("ForCausalLM") for a in (getattr(hf_config, "architectures", None) or []))


class CrossEncoder(nn.Module):
    """Backbone + pooling + MLP head → logits over the grades of the scale."""

    def __init__(self, config: TeacherConfig, backbone: nn.Module):
        super().__init__()
        self.config = config
        self.backbone = backbone
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

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "last":  # right padding: the last 1 of each mask row
            last = mask.sum(1) - 1
            return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                features: torch.Tensor | None = None) -> torch.Tensor:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        pooled = self.pool(out.last_hidden_state, attention_mask).float()
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


def quiet_transformers() -> None:
    """transformers' load reports (newly initialised poolers, weight-loading bars) are noise in our logs."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def build_backbone(name_or_path: str | Path):
    """(backbone module, tokenizer, registry prefixes, is_decoder) for a backbone name or directory."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    quiet_transformers()
    from searchrel.models.registry import backbone_for, resolve_model

    path = resolve_model(str(name_or_path))
    hf_config = AutoConfig.from_pretrained(path)
    backbone = AutoModel.from_pretrained(path, config=hf_config, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    info = backbone_for(str(name_or_path))
    return backbone, tokenizer, info, _is_decoder(hf_config)


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


def transformer_layers(backbone: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks of any transformers backbone (BERT's encoder.layer, Llama's layers, ...)."""
    n = backbone.config.num_hidden_layers
    for module in backbone.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"cannot find the {n} transformer layers of {type(backbone).__name__}")


def _with_lora(backbone, opts: LoraOptions):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ImportError("LoRA needs peft: pip install 'searchrel[llm]' (or pip install peft)") from None
    return get_peft_model(backbone, LoraConfig(r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout,
                                               target_modules=opts.target_modules))


def load_teacher(path: str | Path, device: str = "cpu") -> tuple[CrossEncoder, object]:
    """Load a saved teacher (and its tokenizer) for prediction, on ``device`` (auto, cpu, cuda, cuda:N).
    An ensemble teacher directory gives ``(EnsembleTeacher, None)``: ``predict_probs`` serves both."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{path}: not a teacher directory ({CONFIG_FILE} is missing)")
    from searchrel.teacher.ensemble import EnsembleTeacher, is_ensemble

    if is_ensemble(path):  # members + stacker: no tokenizer of its own (each member has its own)
        return EnsembleTeacher.load(path, device), None
    quiet_transformers()
    config = TeacherConfig.model_validate_json((path / CONFIG_FILE).read_text())
    hf_config = AutoConfig.from_pretrained(path / "backbone")
    backbone = AutoModel.from_config(hf_config, dtype=torch.float32)
    model = CrossEncoder(config.model_copy(update={"lora": None}), backbone)
    missing, unexpected = model.load_state_dict(load_file(str(path / WEIGHTS_FILE)), strict=False)
    missing = [m for m in missing if not _is_tied(m, backbone)]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    from searchrel.models.device import resolve_device

    return model.to(resolve_device(device)), AutoTokenizer.from_pretrained(path / "backbone")


def _is_tied(name: str, backbone) -> bool:
    return bool(getattr(backbone.config, "tie_word_embeddings", False)) and "lm_head" in name


def decode_grades(probs: np.ndarray, scale: Scale, thresholds: list[float] | None) -> np.ndarray:
    """Predicted grade per row: the most probable grade, or the expected grade cut at fitted thresholds."""
    grades = np.array(scale.grades)
    if thresholds is None:
        return grades[probs.argmax(1)]
    expected = probs @ grades
    return grades[np.searchsorted(np.asarray(thresholds), expected, side="right")]


def save_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")
