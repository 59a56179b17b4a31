"""A teacher member that keeps what the embedding model knows: the bi-encoder itself, fine-tuned on the labels.

A cross-encoder made from an embedding model starts from scratch on how to compare a query with an item; the
bi-encoder starts at the zero-shot model's ranking and only moves from there. Its top ``train_layers`` transformer
blocks (and the sentence-transformers projection) are trained on the human labels with a listwise loss over each
query's judged items (ListNet on ``scale * cosine``) plus a grade cross-entropy through a per-grade affine head on
the cosine, so the member gives calibrated grade probabilities too. Items are shared by a query and its
translations, so a batch is one query group: its items are encoded once and ranked for every language's query.

Saved as a sentence-transformers folder (so ``load_encoder`` and every embedding path read it) plus
``biencoder.json``: the config and the grade head.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from searchrel.data.dataset import Dataset, Scale
from searchrel.eval.evaluate import EvalConfig, evaluate
from searchrel.models.backbone import transformer_layers
from searchrel.models.encode import cpu_has_bf16, load_encoder
from searchrel.models.pairs import collate
from searchrel.models.registry import backbone_for, resolve_model
from searchrel.models.st_head import ST_CONFIG, ST_MODULES, DenseHead, folder_prompts
from searchrel.models.training import Budget
from searchrel.progress import console
from searchrel.teacher.config import BiEncoderConfig
from searchrel.teacher.losses import listnet_loss

HEAD_FILE = "biencoder.json"


class GradeHead(torch.nn.Module):
    """``logits_g = a_g * cosine + b_g``: a multinomial logistic model on the cosine, ordered by initialisation."""

    def __init__(self, n_grades: int):
        super().__init__()
        self.a = torch.nn.Parameter(torch.linspace(-4.0, 4.0, n_grades) * 5)
        self.b = torch.nn.Parameter(torch.zeros(n_grades))

    def forward(self, cos: torch.Tensor) -> torch.Tensor:
        return cos.unsqueeze(-1) * self.a + self.b


class _Tower(torch.nn.Module):
    """Transformer + mean pooling + the folder's Dense layers + L2 norm, differentiable."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer  # tokenizers/transformers: heavy (seconds), imported where a model is loaded
        from transformers import AutoModel  # tokenizers/transformers: heavy (seconds), imported where a model is loaded

        super().__init__()
        self.path = path
        self.model = AutoModel.from_pretrained(path, attn_implementation="sdpa", dtype=torch.float32)
        head = DenseHead.load(path)
        self.dense = torch.nn.ModuleList()
        for weight, bias, act in (head.layers if head else []):
            if act is not None:
                raise ValueError(f"{path}: only Identity Dense layers can be fine-tuned here")
            lin = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
            lin.weight.data = torch.from_numpy(weight.copy())
            if bias is not None:
                lin.bias.data = torch.from_numpy(bias.copy())
            self.dense.append(lin)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        pad = self.tokenizer.token_to_id("<pad>")
        self.pad_id = int(pad if pad is not None else 0)

    def forward(self, texts: list[str], max_length: int, chunk: int = 8) -> torch.Tensor:
        """Embeddings of ``texts``, run in length-sorted chunks of ``chunk`` (Gemma's masked attention costs far
        more per text in big padded batches on a CPU: see ``models.encode``), returned in input order."""
        if len(texts) > chunk:
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            parts = [self.forward([texts[i] for i in order[s:s + chunk]], max_length, chunk)
                     for s in range(0, len(order), chunk)]
            return torch.cat(parts)[torch.from_numpy(np.argsort(order))]
        self.tokenizer.enable_truncation(max_length)
        ids, mask = collate([e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)], self.pad_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=_bf16()):
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        m = mask.unsqueeze(-1).float()
        x = (hidden * m).sum(1) / m.sum(1)
        for lin in self.dense:
            x = lin(x)
        return torch.nn.functional.normalize(x, dim=-1)


def _bf16() -> bool:
    return cpu_has_bf16()


def _freeze(tower: _Tower, train_layers: int) -> None:
    tower.model.requires_grad_(False)
    layers = transformer_layers(tower.model)
    for layer in layers[len(layers) - train_layers:]:
        layer.requires_grad_(True)
    norm = getattr(tower.model, "norm", None)
    if norm is not None:
        norm.requires_grad_(True)


def _groups(pairs: pd.DataFrame, ds: Dataset) -> list[pd.DataFrame]:
    """Training batches: one query group (a query and its translations) with its judged items."""
    group = ds.queries.set_index("query_id")["group_id"] if "group_id" in ds.queries else None
    key = pairs["query_id"].map(group).fillna(pairs["query_id"]) if group is not None else pairs["query_id"]
    return [g for _, g in pairs.groupby(key.to_numpy(), sort=True)]


def _step_loss(tower: _Tower, head: GradeHead, batch: pd.DataFrame, texts: pd.Series, cfg: BiEncoderConfig,
               prefixes: tuple[str, str], scale: Scale) -> torch.Tensor:
    items = batch["item_id"].unique().tolist()
    queries = batch["query"].unique().tolist()
    ivec = tower([prefixes[1] + t for t in texts.loc[items].tolist()], cfg.item_max_length)
    qvec = tower([prefixes[0] + q for q in queries], cfg.query_max_length)
    i_row = pd.Series(range(len(items)), index=items).loc[batch["item_id"]].to_numpy().copy()
    q_row = pd.Series(range(len(queries)), index=queries).loc[batch["query"]].to_numpy().copy()
    cos = (qvec[q_row] * ivec[i_row]).sum(-1)
    labels = torch.tensor(batch["label"].to_numpy(), dtype=torch.float32)
    target = torch.tensor(np.searchsorted(scale.grades, batch["label"].to_numpy()), dtype=torch.long)
    loss = torch.nn.functional.cross_entropy(head(cos), target)
    if cfg.listwise_weight:
        loss = loss + cfg.listwise_weight * listnet_loss(cos * cfg.scale, labels, torch.from_numpy(q_row))
    return loss


def train_biencoder(ds: Dataset, out: Path, cfg: BiEncoderConfig, texts: pd.Series,
                    train_pairs: pd.DataFrame, valid_pairs: pd.DataFrame) -> Path:
    """Fine-tune ``cfg.backbone`` on ``train_pairs``; keep the epoch with the best valid NDCG@8; write ``out``."""
    torch.manual_seed(cfg.seed)
    base = resolve_model(cfg.backbone)
    info = backbone_for(cfg.backbone)
    prefixes = (info.query_prefix, info.passage_prefix)
    tower = _Tower(base)
    _freeze(tower, cfg.train_layers)
    head = GradeHead(ds.info.scale.n_grades)
    body = [p for p in tower.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": body, "lr": cfg.lr}, {"params": head.parameters(), "lr": cfg.head_lr}],
                            weight_decay=0.01)
    groups = _groups(train_pairs, ds)
    rng = np.random.default_rng(cfg.seed)
    budget = Budget(cfg.max_minutes)
    best, best_state, history = -math.inf, None, []

    def validate() -> float:
        tower.eval()
        with torch.inference_mode():
            items = valid_pairs["item_id"].unique().tolist()
            queries = valid_pairs["query"].unique().tolist()
            ivec = torch.cat([tower([prefixes[1] + t for t in texts.loc[items[s:s + 16]].tolist()],
                                    cfg.item_max_length) for s in range(0, len(items), 16)])
            qvec = tower([prefixes[0] + q for q in queries], cfg.query_max_length)
            i_row = pd.Series(range(len(items)), index=items).loc[valid_pairs["item_id"]].to_numpy().copy()
            q_row = pd.Series(range(len(queries)), index=queries).loc[valid_pairs["query"]].to_numpy().copy()
            cos = (qvec[q_row] * ivec[i_row]).sum(-1).numpy().copy()
        tower.train()
        frame = valid_pairs[["query_id", "item_id"]].assign(score=cos)
        return float(evaluate(ds, frame, EvalConfig(split="valid"), pairs=valid_pairs).overall["ndcg@8"])

    tower.train()
    if not valid_pairs.empty:
        best = validate()  # the zero-shot start: fine-tuning must beat it to be kept
        best_state = "zero-shot"
        history.append({"epoch": 0, "valid_ndcg@8": best, "elapsed_s": round(budget.elapsed_s, 1)})
        console.print(f"bi-encoder: zero-shot valid NDCG@8 {best:.4f}")
    steps = 0
    for epoch in range(cfg.epochs):
        for gi in rng.permutation(len(groups)):
            loss = _step_loss(tower, head, groups[gi], texts, cfg, prefixes, ds.info.scale)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(body, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            steps += 1
            if budget.spent():
                break
        score = validate() if not valid_pairs.empty else math.inf
        history.append({"epoch": epoch + 1, "steps": steps, "valid_ndcg@8": score,
                        "elapsed_s": round(budget.elapsed_s, 1)})
        console.print(f"bi-encoder: epoch {epoch + 1}, {steps} steps, valid NDCG@8 {score:.4f}")
        if score > best:
            best = score
            best_state = ({k: v.detach().clone() for k, v in tower.state_dict().items()},
                          {k: v.detach().clone() for k, v in head.state_dict().items()})
        if budget.spent():
            console.print(f"bi-encoder: time budget of {cfg.max_minutes} min spent after {steps} steps")
            break
    if best_state == "zero-shot":  # no epoch beat the pretrained model: keep it, fit only the grade head
        tower = _Tower(base)
        _fit_head_only(tower, head, train_pairs, texts, cfg, prefixes, ds.info.scale)
    elif best_state is not None:
        tower.load_state_dict(best_state[0])
        head.load_state_dict(best_state[1])
    _save(out, base, tower, head, cfg, history, prefixes)
    return out


def _fit_head_only(tower: _Tower, head: GradeHead, pairs: pd.DataFrame, texts: pd.Series, cfg: BiEncoderConfig,
                   prefixes: tuple[str, str], scale: Scale) -> None:
    """The grade head alone on the frozen model's cosines (a one-feature multinomial logistic fit)."""
    enc = load_encoder(str(tower.path))
    q = enc.encode(pairs["query"].unique().tolist(), kind="query", max_length=cfg.query_max_length)
    d = enc.encode(texts.loc[pairs["item_id"].unique()].tolist(), kind="passage", max_length=cfg.item_max_length)
    qi = pd.Series(range(len(q)), index=pairs["query"].unique()).loc[pairs["query"]].to_numpy()
    ii = pd.Series(range(len(d)), index=pairs["item_id"].unique()).loc[pairs["item_id"]].to_numpy()
    cos = torch.from_numpy(np.einsum("nd,nd->n", q[qi], d[ii]))
    target = torch.tensor(np.searchsorted(scale.grades, pairs["label"].to_numpy()), dtype=torch.long)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(cos), target)
        loss.backward()
        return loss

    opt.step(closure)


def _save(out: Path, base: Path, tower: _Tower, head: GradeHead, cfg: BiEncoderConfig, history: list[dict],
          prefixes: tuple[str, str]) -> None:
    """The base's folder with the trained weights (and a sentence-transformers folder's Dense layers) written over,
    and the query/document prompts it was trained with, so that every embedding path reads it as trained."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    def skip(folder: str, names: list[str]) -> list[str]:  # the weights are written below; provenance is the base's
        return [n for n in names if Path(folder) == base and n in ("model.safetensors", "manifest.json")]

    shutil.copytree(base, tmp, ignore=skip)
    state = {k: v.detach().contiguous() for k, v in tower.model.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    modules = json.loads((tmp / ST_MODULES).read_text()) if (tmp / ST_MODULES).is_file() else []  # plain: none
    dense_dirs = [tmp / m["path"] for m in modules if m.get("type", "").endswith("models.Dense")]
    if any(prefixes) and not folder_prompts(tmp)[0]:  # a registered plain-transformers base (me5-small): its
        # prefixes come from the registry, which does not know this folder
        (tmp / ST_CONFIG).write_text(json.dumps({"prompts": {"query": prefixes[0], "document": prefixes[1]}}) + "\n")
    for lin, folder in zip(tower.dense, dense_dirs):
        dense_state = {"linear.weight": lin.weight.detach().contiguous()}
        if lin.bias is not None:
            dense_state["linear.bias"] = lin.bias.detach().contiguous()
        save_file(dense_state, str(folder / "model.safetensors"))
    (tmp / HEAD_FILE).write_text(json.dumps({
        "config": cfg.model_dump(), "a": head.a.detach().tolist(), "b": head.b.detach().tolist(),
        "query_max_length": cfg.query_max_length, "item_max_length": cfg.item_max_length,
        "history": history}, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
