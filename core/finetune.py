"""Fine-tuning: a training run that starts from a trained model instead of from scratch.

This is how a multilingual model passes on what it learned (Zoph et al. 2016, "Transfer Learning
for Low-Resource Neural Machine Translation"; Neubig & Hu 2018, "Rapid Adaptation of Neural
Machine Translation to New Languages"): the encoder already reads English, the decoder already
writes fluent sentences, and a few thousand pairs of a new direction only have to teach what is new.

What a fine-tuning run takes from its starting run folder, and what it starts afresh:
- the weights and the tokenizer are taken; the optimizer and the learning-rate schedule start
  afresh, so the run's own `lr` and `warmup_steps` apply (usually a lower rate than from scratch);
- the model's shape is the starting model's: a config that asks for another shape is refused;
- a language the starting model has never seen gets its `<2xx>` tag and the pieces its words need
  (`Tokenizer.extend`). Old pieces keep their ids, so the embedding matrix keeps its rows and gains
  one per new piece. A new piece's row starts as the mean of the rows of the old pieces that spell
  it (the old tokenizer's segmentation of the same text), and a new tag's row as the mean of the old
  tags', so the model starts from something it already understands rather than from noise;
- `freeze` keeps parts at the starting weights: "embeddings" (the rows of the old pieces, and
  learned positions; new rows still learn) and "encoder" (every encoder layer and its final norm);
- `replay` mixes the starting model's own directions back in, so that it does not forget them
  (catastrophic forgetting; French, 1999).

The run folder's config.json records where the run started: the folder and a SHA-256 of the
starting weights, the languages and pieces added, and the starting model's directions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from core import checkpoint
from core.config import ModelConfig, RunConfig
from core.corpus import Corpus
from core.tokenizer import Tokenizer
from core.vocab import UNK_ID

# The fields that fix the shape of every weight; dropout and the like may change when fine-tuning.
SHAPE = ("d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers", "max_positions", "positions")


class FineTuneError(ValueError):
    """A starting point that cannot be used, with a message saying why and what to do."""


@dataclass
class Start:
    """A trained run folder, opened as the starting point of a fine-tuning run."""

    folder: Path
    config: dict[str, Any]  # its config.json
    tokenizer: Tokenizer
    weights: dict[str, Tensor]
    weights_sha256: str

    @property
    def languages(self) -> list[str]:
        return list(self.config["languages"])

    @property
    def directions(self) -> list[str]:
        return list(self.config["directions"])

    @property
    def model_config(self) -> ModelConfig:
        return RunConfig.from_dict(self.config["run"]).model


def open_start(folder: str | Path) -> Start:
    """Read a run folder to start from; a clear FineTuneError when it is not one."""
    folder = _check_folder(folder)
    config = checkpoint.read_config(folder)
    tokenizer = Tokenizer.load(folder / checkpoint.TOKENIZER, config["languages"])
    weights_file = folder / checkpoint.WEIGHTS
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    weights = {name: tensor.float() for name, tensor in checkpoint.load_weights(weights_file).items()}
    return Start(folder, config, tokenizer, weights, digest)


def check_shape(start: Start, model: ModelConfig) -> None:
    """Refuse a model config whose shape differs from the starting model's, naming the differences."""
    theirs = start.model_config
    different = [
        f"{name} {getattr(model, name)} (the starting model has {getattr(theirs, name)})"
        for name in SHAPE
        if getattr(model, name) != getattr(theirs, name)
    ]
    if different:
        raise FineTuneError(
            f"A fine-tuning run keeps the shape of the model it starts from ({start.folder}); "
            f"this config asks for {', '.join(different)}. Leave the shape options out, or "
            f"start from `core.finetune.starting_config('{start.folder}')`."
        )


def starting_config(folder: str | Path, **overrides: Any) -> RunConfig:
    """The starting run's own config, set to fine-tune from it, with `overrides` applied
    (e.g. `source=`, `languages=`, `directions=`, `steps=`, `lr=`, `freeze=`): the natural start
    of a fine-tuning config, since its shape already matches."""
    config = checkpoint.read_config(_check_folder(folder))
    run = RunConfig.from_dict(config["run"])
    return run.with_overrides(init_from=str(folder), **overrides)


def _check_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not checkpoint.is_checkpoint(folder):
        raise FineTuneError(
            f"Cannot start from {folder}: it is not a trained run folder "
            f"(it needs {checkpoint.CONFIG}, {checkpoint.WEIGHTS} and {checkpoint.TOKENIZER})"
        )
    return folder


def grow(start: Start, texts: dict[str, list[str]], pieces_per_language: int, seed: int) -> tuple[Tokenizer, dict[str, Tensor]]:
    """The starting tokenizer and weights, grown for the languages of `texts` it does not know."""
    tokenizer = start.tokenizer.extend(texts, pieces_per_language, seed)
    weights = dict(start.weights)
    if len(tokenizer) > len(start.tokenizer):
        weights["embedding.weight"] = grown_embedding(weights["embedding.weight"], start.tokenizer, tokenizer)
    return tokenizer, weights


def grown_embedding(embedding: Tensor, old: Tokenizer, new: Tokenizer) -> Tensor:
    """[len(old), d] → [len(new), d]: old rows unchanged, each new row the mean of the old rows that
    spell its piece (a new tag: the mean of the old tags; nothing spelled: the mean of all rows)."""
    new_tags = {new.tag_ids[lang] for lang in new.languages if lang not in old.languages}
    tag_mean = embedding[list(old.tag_ids.values())].mean(0)
    rows = []
    for piece_id in range(len(old), len(new)):
        if piece_id in new_tags:
            rows.append(tag_mean)
            continue
        surface = new.processor.id_to_piece(piece_id).replace("\u2581", " ")
        spelled = [i for i in old.encode(surface) if i != UNK_ID]
        rows.append(embedding[spelled].mean(0) if spelled else embedding.mean(0))
    return torch.cat([embedding, torch.stack(rows)])


# --- freezing ----------------------------------------------------------------------------------


def freeze(model: nn.Module, parts: list[str], first_new_id: int) -> None:
    """Keep `parts` of `model` at their current weights: no gradient reaches them.

    With new pieces in the vocabulary, "embeddings" keeps the old rows only: a hook zeroes their
    gradient, so the new rows still learn (the matrix is also the output layer, tied)."""
    if "encoder" in parts:
        for name, parameter in model.named_parameters():
            if name.startswith(("encoder_layers.", "encoder_norm.")):
                parameter.requires_grad_(False)
    if "embeddings" in parts:
        if hasattr(model, "positions"):
            model.positions.weight.requires_grad_(False)
        weight = model.embedding.weight
        if first_new_id >= weight.shape[0]:
            weight.requires_grad_(False)
        else:
            keep = torch.zeros(weight.shape[0], 1, device=weight.device)
            keep[first_new_id:] = 1.0
            weight.register_hook(lambda grad: grad * keep)


def parameter_groups(model: nn.Module, weight_decay: float, parts: list[str]) -> list[dict[str, Any]]:
    """The trainable parameters for AdamW. A partly frozen embedding gets no weight decay:
    decoupled decay shrinks weights even where the gradient is zero, and would move the frozen rows."""
    partly_frozen = "embeddings" in parts and model.embedding.weight.requires_grad
    embedding = [model.embedding.weight] if partly_frozen else []
    rest = [p for p in model.parameters() if p.requires_grad and not any(p is e for e in embedding)]
    groups = [{"params": rest, "weight_decay": weight_decay}]
    if embedding:
        groups.append({"params": embedding, "weight_decay": 0.0})
    return groups


# --- replay ------------------------------------------------------------------------------------


def replay_corpus(started_from: dict[str, Any], corpus: Corpus) -> Corpus:
    """`corpus` together with the data the starting model was trained on (`started_from`: the record
    a fine-tuning run keeps in its config.json), so that its old directions can be replayed."""
    from core.corpus import load_corpus

    source, languages = started_from["source"], started_from["languages"]
    try:
        original = load_corpus(source, languages)
    except ValueError as error:
        raise FineTuneError(f"Replay needs the data {started_from['path']} was trained on ({source}): {error}") from error
    if original.name == corpus.name and set(languages) <= set(corpus.languages):
        return corpus
    return corpus.merge(original)
