"""From encoded sentences to training batches.

- Every example is one (source, target) pair of one direction: the source starts with the target
  tag, `<2de> A dog runs . </s>`, the target is `Ein Hund läuft .`.
- Directions are drawn with temperature sampling, p(d) ∝ n_d^(1/T) (Arivazhagan et al. 2019):
  T=1 follows the data sizes, large T evens them out so small directions are not starved.
- Batches are packed by a token budget after sorting a large pool of examples by source and
  target length, so sentences of similar length share a batch and little compute goes to padding.
- The stream is a pure function of (seed, pool number): resuming at a saved position replays
  exactly the same batches as an uninterrupted run.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from core.languages import split_direction
from core.vocab import BOS_ID, EOS_ID, PAD_ID

Example = tuple[list[int], list[int]]  # (source ids with tag and </s>, target ids without specials)

POOL_BATCHES = 64  # a pool holds about this many batches' worth of tokens


@dataclass
class Batch:
    source: Tensor  # [B, S]
    target_in: Tensor  # [B, T] = <s> y1 … yn
    target_out: Tensor  # [B, T] = y1 … yn </s>

    def to(self, device: torch.device) -> Batch:
        return Batch(self.source.to(device), self.target_in.to(device), self.target_out.to(device))

    @property
    def tokens(self) -> int:
        """Real (non-padding) source + target tokens."""
        return int((self.source != PAD_ID).sum() + (self.target_out != PAD_ID).sum())


def make_example(source: list[int], target: list[int], tag_id: int) -> Example:
    return [tag_id, *source, EOS_ID], target


def example_cost(example: Example) -> tuple[int, int]:
    source, target = example
    return len(source), len(target) + 1


def pack(examples: list[Example], tokens_per_batch: int) -> list[list[Example]]:
    """Sort by (source, target) length and cut into batches whose padded size fits the budget."""
    ordered = sorted(examples, key=example_cost)
    batches: list[list[Example]] = []
    current: list[Example] = []
    max_source = max_target = 0
    for example in ordered:
        source_len, target_len = example_cost(example)
        grown_source, grown_target = max(max_source, source_len), max(max_target, target_len)
        if current and (len(current) + 1) * (grown_source + grown_target) > tokens_per_batch:
            batches.append(current)
            current, grown_source, grown_target = [], source_len, target_len
        current.append(example)
        max_source, max_target = grown_source, grown_target
    if current:
        batches.append(current)
    return batches


def collate(examples: list[Example]) -> Batch:
    source_len = max(len(s) for s, _ in examples)
    target_len = max(len(t) for _, t in examples) + 1
    source = torch.full((len(examples), source_len), PAD_ID, dtype=torch.long)
    target_in = torch.full((len(examples), target_len), PAD_ID, dtype=torch.long)
    target_out = torch.full((len(examples), target_len), PAD_ID, dtype=torch.long)
    for row, (s, t) in enumerate(examples):
        source[row, : len(s)] = torch.tensor(s)
        target_in[row, : len(t) + 1] = torch.tensor([BOS_ID, *t])
        target_out[row, : len(t) + 1] = torch.tensor([*t, EOS_ID])
    return Batch(source, target_in, target_out)


def direction_probabilities(sizes: dict[str, int], temperature: float) -> dict[str, float]:
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    weights = {d: n ** (1.0 / temperature) for d, n in sizes.items() if n > 0}
    total = sum(weights.values())
    return {d: w / total for d, w in weights.items()}


def replay_probabilities(sizes: dict[str, int], temperature: float, replayed: set[str], share: float) -> dict[str, float]:
    """Like `direction_probabilities`, but the `replayed` directions (a fine-tuned model's old ones,
    mixed back in against forgetting) get `share` of the batches together, the others the rest."""
    if not replayed or not share:
        return direction_probabilities(sizes, temperature)
    new = direction_probabilities({d: n for d, n in sizes.items() if d not in replayed}, temperature)
    old = direction_probabilities({d: n for d, n in sizes.items() if d in replayed}, temperature)
    return {**{d: p * (1 - share) for d, p in new.items()}, **{d: p * share for d, p in old.items()}}


class BatchStream:
    """An endless, resumable stream of training batches over several directions."""

    def __init__(
        self,
        encoded: dict[str, list[list[int]]],
        directions: list[str],
        tag_ids: dict[str, int],
        tokens_per_batch: int,
        temperature: float,
        seed: int,
        max_tokens_per_sentence: int,
        replayed: frozenset[str] = frozenset(),
        replay: float = 0.0,
    ) -> None:
        self.encoded = encoded
        self.tag_ids = tag_ids
        self.tokens_per_batch = tokens_per_batch
        self.seed = seed
        # Sentence indices usable for each direction: both sides non-empty and not too long.
        self.usable = {}
        for name in directions:
            src, tgt = split_direction(name)
            self.usable[name] = [
                i
                for i, (s, t) in enumerate(zip(encoded[src], encoded[tgt]))
                if 0 < len(s) <= max_tokens_per_sentence and 0 < len(t) <= max_tokens_per_sentence
            ]
        self.probabilities = replay_probabilities({d: len(i) for d, i in self.usable.items()}, temperature, set(replayed), replay)
        if not self.probabilities:
            raise ValueError("No usable training pairs for the chosen directions")
        self.directions = list(self.probabilities)
        self.weights = [self.probabilities[d] for d in self.directions]
        self.pool_index = 0
        self.batch_index = 0

    def pool(self, index: int) -> list[list[Example]]:
        """The batches of pool `index`, in training order; depends only on (seed, index)."""
        rng = random.Random(self.seed * 1_000_003 + index)
        budget = POOL_BATCHES * self.tokens_per_batch
        examples: list[Example] = []
        while budget > 0:
            name = rng.choices(self.directions, self.weights)[0]
            src, tgt = split_direction(name)
            i = rng.choice(self.usable[name])
            example = make_example(self.encoded[src][i], self.encoded[tgt][i], self.tag_ids[tgt])
            examples.append(example)
            budget -= sum(example_cost(example))
        batches = pack(examples, self.tokens_per_batch)
        rng.shuffle(batches)
        return batches

    def state(self) -> dict[str, int]:
        return {"pool_index": self.pool_index, "batch_index": self.batch_index}

    def load_state(self, state: dict[str, int]) -> None:
        self.pool_index, self.batch_index = int(state["pool_index"]), int(state["batch_index"])

    def __iter__(self) -> Iterator[Batch]:
        while True:
            batches = self.pool(self.pool_index)
            while self.batch_index < len(batches):
                batch = batches[self.batch_index]
                self.batch_index += 1
                yield collate(batch)
            self.pool_index += 1
            self.batch_index = 0
