"""The student: two towers (query, item) that never see each other's tokens, and a small scorer.

Each tower is a transformers backbone cut to its first ``layers`` layers, mean-pooled, projected to ``dim`` and
L2-normalised, so item vectors can be computed offline and query vectors online, and reused for nearest-neighbour
search. The scorer is an MLP over ``q * d``, ``|q - d|``, ``q . d`` and the pair features (standardised with
statistics of the training pairs), giving one logit per grade. Both towers share the frozen word-embedding table.

Saved as ``student.json`` (the config), ``features.json`` (fitted feature state), ``model.safetensors`` and
``backbone/`` (the cut backbone's config and tokenizer).
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from searchrel.io import read_config
from searchrel.models.backbone import build_backbone, pool, quiet_transformers, transformer_layers
from searchrel.models.encode import cpu_has_bf16
from searchrel.models.pairs import collate
from searchrel.student.config import StudentConfig
from searchrel.student.features import make_feature, sides

CONFIG_FILE = "student.json"
FEATURES_FILE = "features.json"
WEIGHTS_FILE = "model.safetensors"
SHARED_TABLE = "item_tower.backbone.embeddings.word_embeddings.weight"  # saved once, as the query tower's


def keep_layers(backbone: nn.Module, n: int | None) -> nn.Module:
    """Cut a transformers backbone to its first ``n`` transformer layers (in place)."""
    layers = transformer_layers(backbone)
    if n is None or n >= len(layers):
        return backbone
    if n < 1:
        raise ValueError(f"a tower needs at least one layer (got layers={n})")
    for parent in backbone.modules():
        for name, child in parent.named_children():
            if child is layers:
                setattr(parent, name, nn.ModuleList(list(layers)[:n]))
    backbone.config.num_hidden_layers = n
    return backbone


class Tower(nn.Module):
    """Backbone -> mean pooling -> projection -> L2 normalisation."""

    def __init__(self, backbone: nn.Module, dim: int):
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Linear(backbone.config.hidden_size, dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.project(self.pooled(input_ids, attention_mask))

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The backbone's mean-pooled state (fp32): what the head's epochs compute once per text."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, "mean").float()

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.proj(pooled).float(), dim=-1)


@dataclass
class Side:
    """One side (queries or items) ready for scoring: tower embeddings and each feature's state."""

    emb: np.ndarray
    features: dict[str, object]

    def __len__(self) -> int:
        return len(self.emb)


class Student(nn.Module):
    def __init__(self, config: StudentConfig, query_backbone: nn.Module, item_backbone: nn.Module,
                 feature_states: dict[str, dict] | None = None):
        super().__init__()
        self.config = config
        self.query_tower = Tower(query_backbone, config.dim)
        self.item_tower = Tower(item_backbone, config.dim)
        if config.freeze_embeddings:
            table = query_backbone.get_input_embeddings()
            table.weight.requires_grad_(False)
            item_backbone.set_input_embeddings(table)
        states = feature_states or {}
        self.features = [make_feature(n, states.get(n), model=config.zero_shot_model) for n in config.features]
        n_feat = sum(f.size for f in self.features)
        self.register_buffer("feat_mean", torch.zeros(n_feat))
        self.register_buffer("feat_std", torch.ones(n_feat))
        width = 2 * config.dim + 1 + n_feat
        self.scorer = nn.Sequential(nn.Linear(width, config.scorer_hidden), nn.GELU(), nn.Dropout(config.dropout),
                                    nn.Linear(config.scorer_hidden, config.scale.n_grades))
        # the residual: grade logits linear in the standardised pair features, started as the strongest one (the
        # zero-shot cosine) with the MLP's output at zero — a new student ranks exactly like its zero-shot feature,
        # and training can only move it from there where the labels say so
        self.skip = nn.Linear(n_feat, config.scale.n_grades) if config.residual and n_feat else None
        if self.skip is not None:
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)
            nn.init.zeros_(self.scorer[-1].weight)
            nn.init.zeros_(self.scorer[-1].bias)
            start = self._feature_column(config.residual_start)
            if start is not None:
                with torch.no_grad():
                    self.skip.weight[:, start] = torch.linspace(-2.0, 2.0, config.scale.n_grades)
        self.tokenizer = None  # set by new_student / load_student

    def _feature_column(self, name: str) -> int | None:
        """The first column of feature ``name`` among the pair features, or None if the student lacks it."""
        col = 0
        for f in self.features:
            if f.name == name:
                return col
            col += f.size
        return None

    # -- scoring ----------------------------------------------------------------------------------
    def score(self, q: torch.Tensor, d: torch.Tensor, feats: torch.Tensor | None) -> torch.Tensor:
        """Grade logits for pairs of query vectors ``q`` and item vectors ``d`` (rows aligned) with their features."""
        parts = [q * d, (q - d).abs(), (q * d).sum(-1, keepdim=True)]
        if not self.features:
            return self.scorer(torch.cat(parts, -1))
        z = (feats.float() - self.feat_mean) / self.feat_std
        logits = self.scorer(torch.cat(parts + [z], -1))
        return logits if self.skip is None else logits + self.skip(z)

    def tokenize(self, texts: Sequence[str], kind: str) -> list[list[int]]:
        cfg = self.config
        prefix, max_len = ((cfg.query_prefix, cfg.query_max_length) if kind == "query"
                           else (cfg.passage_prefix, cfg.item_max_length))
        return self.tokenizer([prefix + t for t in texts], truncation=True, max_length=max_len,
                              return_attention_mask=False, return_token_type_ids=False)["input_ids"]

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], kind: str, batch_size: int = 64, bf16: bool | None = None,
              pooled: bool = False) -> np.ndarray:
        """L2-normalised tower embeddings ``[n, dim]`` (``kind`` query or item), batched by length; with ``pooled``
        the backbone's pooled states ``[n, hidden]`` before the projection."""
        tower = self.query_tower if kind == "query" else self.item_tower
        ids = self.tokenize(texts, kind)
        width = tower.proj.in_features if pooled else self.config.dim
        out = np.zeros((len(ids), width), np.float32)
        order = np.argsort([len(x) for x in ids], kind="stable")
        use_bf16 = cpu_has_bf16() if bf16 is None else bf16
        self.eval()
        for start in range(0, len(order), batch_size):
            b = order[start:start + batch_size]
            input_ids, mask = collate([ids[i] for i in b], self.tokenizer.pad_token_id)
            with torch.autocast("cpu", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext():
                out[b] = (tower.pooled if pooled else tower)(input_ids, mask).float().numpy()
        return out

    def side(self, texts: Sequence[str], kind: str, bf16: bool | None = None, pooled: bool = False) -> Side:
        """Everything the scorer needs from one side: offline for items, online (cached) for queries (``pooled``:
        the tower's pooled states in place of its embeddings, for training the projection on them)."""
        return Side(self.embed(texts, kind, bf16=bf16, pooled=pooled), sides(self.features, texts, kind))

    def pair_features(self, qs: Side, q_idx: np.ndarray, items: Side, i_idx: np.ndarray) -> np.ndarray | None:
        if not self.features:
            return None
        return np.concatenate([f.pairs(qs.features[f.name], q_idx, items.features[f.name], i_idx)
                               for f in self.features], 1)

    @torch.inference_mode()
    def predict(self, qs: Side, q_idx: np.ndarray, items: Side, i_idx: np.ndarray,
                feats: np.ndarray | None = None) -> np.ndarray:
        """Grade probabilities ``[n, n_grades]`` for pairs (qs[q_idx[k]], items[i_idx[k]])."""
        q_idx, i_idx = np.asarray(q_idx), np.asarray(i_idx)
        if feats is None:
            feats = self.pair_features(qs, q_idx, items, i_idx)
        self.eval()
        logits = self.score(torch.from_numpy(qs.emb[q_idx]), torch.from_numpy(items.emb[i_idx]),
                            None if feats is None else torch.from_numpy(feats))
        return torch.softmax(logits, -1).numpy()

    # -- persistence ------------------------------------------------------------------------------
    def save(self, out: Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()
                 if not (self.config.freeze_embeddings and k == SHARED_TABLE)}
        save_file(state, str(out / WEIGHTS_FILE))
        self.query_tower.backbone.config.save_pretrained(out / "backbone")
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(out / "backbone")
        (out / FEATURES_FILE).write_text(json.dumps({f.name: f.state() for f in self.features}) + "\n")
        (out / CONFIG_FILE).write_text(self.config.model_dump_json(indent=2) + "\n")  # last: marks it complete
        return out


def new_student(config: StudentConfig, seed: int = 0) -> Student:
    """A fresh student: both towers from the pretrained backbone (cut to ``layers``), new projections and scorer."""


    backbone, tokenizer, info, is_decoder = build_backbone(config.backbone)
    if is_decoder:
        raise ValueError(f"{config.backbone} is a decoder LLM: student towers need an encoder backbone")
    keep_layers(backbone, config.layers)
    if getattr(backbone, "pooler", None) is not None:  # BERT's [CLS] pooler: unused by mean-pooled towers
        backbone.pooler = None
    config = config.model_copy(update={"query_prefix": info.query_prefix, "passage_prefix": info.passage_prefix})
    torch.manual_seed(seed)
    student = Student(config, backbone, copy.deepcopy(backbone))
    student.tokenizer = tokenizer
    return student


def load_student(path: str | Path) -> Student:
    from transformers import (  # tokenizers/transformers: heavy (seconds), imported where a model is loaded
        AutoConfig,
        AutoModel,
        AutoTokenizer,
    )

    path = Path(path)
    raw = read_config(path, CONFIG_FILE, "student")
    quiet_transformers()
    raw.setdefault("residual", False)  # students saved before the residual existed have none
    config = StudentConfig.model_validate(raw)
    hf = AutoConfig.from_pretrained(path / "backbone")
    extra = {"add_pooling_layer": False} if hf.model_type in ("bert", "xlm-roberta", "roberta") else {}
    from transformers.initialization import no_init_weights  # transformers: heavy, imported where a model is loaded

    with no_init_weights():  # every weight is read from the file next: skip random initialisation (~4 s)
        towers = [AutoModel.from_config(hf, dtype=torch.float32, **extra) for _ in range(2)]
    states = json.loads((path / FEATURES_FILE).read_text())
    student = Student(config, *towers, feature_states=states)
    missing, unexpected = student.load_state_dict(load_file(str(path / WEIGHTS_FILE)), strict=False)
    missing = [m for m in missing if m != SHARED_TABLE]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    student.tokenizer = AutoTokenizer.from_pretrained(path / "backbone")
    return student.eval()
