"""Search: greedy, beam, sampling, and a step-by-step view of the decoder's choices.

All searches take a padded batch of encoded sources [B, S] and run the decoder incrementally:
one new position per step, earlier positions' keys/values read from the cache, and the source
keys/values for cross-attention computed once (`Transformer.start_cache`).
A sentence's search takes at most `max_len_a · source_length + max_len_b` steps, one token each,
</s> included; at its last step a translation ends whether or not its token was </s> (it is then
cut at the limit). These rules, and beam search's stopping rule, are CTranslate2's, so the
`ctranslate2` engine (`core.ct2`) finds the same translations.

Three views of a search sit beside it, each in its own small function or class:
- `prefix`: every search can be made to start with given target pieces (`_follow_prefix`: while
  the prefix lasts, only its next piece may be produced, with the model's own probability), so
  the model completes a translation the user started;
- `score_tokens`: the model's probability of each piece of a translation already found, by one
  teacher-forced pass (the per-piece confidence);
- `BeamTree`: what beam search kept, dropped and finished at each step, recorded as it runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from core import compiled, fast
from core.model import LayerCache, Transformer, reorder_caches
from core.vocab import BOS_ID, EOS_ID, PAD_ID


@dataclass
class Hypothesis:
    tokens: list[int]  # target ids, without <s> and </s>
    log_prob: float  # sum of the model's log-probabilities, </s> included
    score: float  # what the search ranked by (beam: length-normalised log-probability)
    piece_log_probs: list[float] | None = None  # per token, </s> included: filled by `score_tokens` when asked


@dataclass
class Step:
    """One decoding step: the most probable next pieces, and the one that was taken."""

    candidates: list[tuple[int, float]]  # (token id, probability), most probable first
    chosen: int
    chosen_probability: float


@dataclass(frozen=True)
class SearchLimits:
    max_len_a: float = 1.5
    max_len_b: int = 10

    def per_sentence(self, source: Tensor, max_positions: int) -> Tensor:
        """[B] the most tokens each translation may have (</s> included): its search's last step."""
        lengths = (source != PAD_ID).sum(dim=1)
        limits = (lengths.float() * self.max_len_a).long() + self.max_len_b
        return limits.clamp(max=max_positions - 1)


DEFAULT_LIMITS = SearchLimits()  # frozen, so one shared default is safe
# Beam search stops once beam_size × PATIENCE hypotheses have finished. Chosen on the validation
# split (bench/patience.py, bench/results/patience.json): 2 gains 0.17 BLEU over 1 (p = 0.005), 4 no more.
PATIENCE = 2.0
Prefix = list[int] | None  # target pieces every translation must start with


def _follow_prefix(log_probs: Tensor, prefix: Prefix, step: int) -> Tensor:
    """While the prefix lasts, only its next piece may be produced; it keeps the model's own
    log-probability, so scores stay comparable with unconstrained search."""
    if not prefix or step >= len(prefix):
        return log_probs
    forced = torch.full_like(log_probs, -torch.inf)
    forced[:, prefix[step]] = log_probs[:, prefix[step]]
    return forced


def _start(model: Transformer, source: Tensor) -> tuple[list[LayerCache], Tensor]:
    if source.device.type == "cpu":
        fast.reuse_freed_memory()  # the steps' big tensors reuse freed memory
    memory = model.encode(source)
    return model.start_cache(memory), model.source_mask(source)


def _next_log_probs(model: Transformer, tokens: Tensor, caches: list[LayerCache], mask: Tensor, step: int) -> Tensor:
    hidden = model.decode(tokens, caches, mask, offset=step, incremental=True)
    return model.logits(hidden[:, -1]).float().log_softmax(dim=-1)


def _decoder_step(model: Transformer) -> compiled.Step:
    """`_next_log_probs` for one search of `model`: compiled where that is built and applies
    (`core/compiled.py`, the same numbers without Python between the operations)."""
    python_step = functools.partial(_next_log_probs, model)
    return compiled.decoder_step(model, python_step) or python_step


@dataclass
class _Rows:
    """The decoder's state for the rows still being decoded. Finished rows are dropped as soon as
    they end, so each step only pays for the sentences that are still going. A sentence has one
    row, or in beam search one per beam (`LayerCache.beams`), which share its source."""

    caches: list[LayerCache]
    mask: Tensor  # [sentences, 1, 1, S]
    max_tokens: Tensor  # [sentences]

    def select(self, rows: Tensor, sentences: Tensor | None = None) -> _Rows:
        """Keep `rows` (each continues that row's past) of `sentences` (by default one row per
        sentence: the same indices)."""
        sentences = rows if sentences is None else sentences
        return _Rows(
            reorder_caches(self.caches, rows, sentences), self.mask.index_select(0, sentences), self.max_tokens.index_select(0, sentences)
        )


def _extend(
    model: Transformer, source: Tensor, limits: SearchLimits, choose: Callable[[Tensor], Tensor], prefix: Prefix = None
) -> list[Hypothesis]:
    """Left to right, one continuation per row: `choose` picks each next token from the [rows, V]
    log-probabilities (argmax for greedy search, a random draw for sampling)."""
    batch = source.shape[0]
    caches, mask = _start(model, source)
    next_log_probs = _decoder_step(model)
    live = _Rows(caches, mask, limits.per_sentence(source, model.config.max_positions))
    device = source.device
    history = torch.full((batch, int(live.max_tokens.max())), PAD_ID, dtype=torch.long, device=device)
    log_prob = torch.zeros(batch, device=device)
    ids = torch.arange(batch, device=device)  # which sentence each live row is
    previous = torch.full((batch, 1), BOS_ID, dtype=torch.long, device=device)
    for step in range(history.shape[1]):
        log_probs = _follow_prefix(next_log_probs(previous, live.caches, live.mask, step), prefix, step)
        choice = choose(log_probs)
        log_prob[ids] += log_probs.gather(1, choice[:, None]).squeeze(1)
        history[ids, step] = choice
        going = (choice != EOS_ID) & (step + 1 < live.max_tokens)  # a row at its length limit ends too
        if not going.any():
            break
        if not going.all():
            keep = going.nonzero().squeeze(1)
            live, ids, choice = live.select(keep), ids[keep], choice[keep]
        previous = choice[:, None]
    return [_hypothesis(row, float(lp), float(lp)) for row, lp in zip(history.tolist(), log_prob)]


@torch.inference_mode()
def greedy(model: Transformer, source: Tensor, limits: SearchLimits = DEFAULT_LIMITS, prefix: Prefix = None) -> list[Hypothesis]:
    """The most probable next piece at every step (after the `prefix`, if one is given)."""
    return _extend(model, source, limits, fast.argmax, prefix)  # log_probs.argmax(dim=-1), faster


def _hypothesis(ids: list[int], log_prob: float, score: float) -> Hypothesis:
    tokens = []
    for i in ids:
        if i in (EOS_ID, PAD_ID):
            break
        tokens.append(i)
    return Hypothesis(tokens, log_prob, score)


@torch.inference_mode()
def beam_search(
    model: Transformer,
    source: Tensor,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    n_best: int = 1,
    limits: SearchLimits = DEFAULT_LIMITS,
    prefix: Prefix = None,
    tree: BeamTree | None = None,
    patience: float = PATIENCE,
) -> list[list[Hypothesis]]:
    """Batched beam search; returns the `n_best` hypotheses of each sentence, best first.

    Hypotheses are ranked by log P(y|x) / |y|^length_penalty (|y| counts </s>): 0 ranks by raw
    probability (short outputs win), 1 by mean log-probability per token.
    All B·K beams are rows of one tensor, so each step is a single batched decoder call.
    A sentence stops once `round(beam_size · patience)` hypotheses have finished; with length
    penalty 0, once its best candidate ended (no continuation can beat it: log-probabilities only
    fall) and `n_best` have finished (`_sentence_done`).
    `tree` (one sentence only) records every candidate the search weighed (`BeamTree`).
    """
    batch, width = source.shape[0], beam_size
    if tree is not None and batch != 1:
        raise ValueError("A beam tree records one sentence: pass a batch of one")
    if patience <= 0:
        raise ValueError("patience must be positive")
    n_best = min(n_best, width)
    stop = _StoppingRule(max(1, round(width * patience)), n_best, length_penalty == 0)
    caches, mask = _start(model, source)
    next_log_probs, top_candidates = _decoder_step(model), compiled.top_candidates() or fast.top_candidates
    device = source.device
    live = _Rows(caches, mask, limits.per_sentence(source, model.config.max_positions))

    # The first step has one beam per sentence (more would be copies of it); each step after
    # that has `width` beams, i.e. rows, per sentence.
    beams = 1
    scores = torch.zeros(batch, beams, device=device)
    tokens = torch.full((batch, 1), BOS_ID, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    best_ended = [False] * batch  # whether a sentence's best candidate has ended with </s>
    ids = torch.arange(batch, device=device)  # which sentence each live group of `beams` rows is

    for step in range(int(live.max_tokens.max())):
        log_probs = _follow_prefix(next_log_probs(tokens[:, -1:], live.caches, live.mask, step), prefix, step)
        groups, vocab = len(ids), log_probs.shape[-1]
        # The 2·width best (beam, piece) continuations of each sentence by path score:
        # (scores.view(-1, 1) + log_probs).view(groups, beams * vocab).topk(2 * width), faster.
        top_scores, top_index = top_candidates(scores, log_probs, 2 * width)
        origin, token = top_index // vocab, top_index % vocab
        is_end = token == EOS_ID
        last = step + 1 >= live.max_tokens  # [groups]: the sentence's last step

        # Among the top `width` candidates, those ending with </s> finish; at a sentence's last
        # step all of them finish, cut at the limit.
        length = step + 1
        for g, k in (is_end[:, :width] | last[:, None]).nonzero().tolist():
            raw, sentence = float(top_scores[g, k]), int(ids[g])
            if raw == -torch.inf:  # ruled out by a prefix
                continue
            path = tokens[g * beams + int(origin[g, k]), 1:].tolist() + ([] if is_end[g, k] else [int(token[g, k])])
            finished[sentence].append(Hypothesis(path, raw, raw / length**length_penalty))
            best_ended[sentence] |= k == 0 and bool(is_end[g, k])

        # The best `width` candidates that do not end continue as the beams of the next step
        # (at most `width` of the 2·width candidates can end, so there are always enough).
        # Beams only move within their sentence, whose `width` rows (from the first step on)
        # share its source keys/values: those stay where they are.
        keep = (is_end.long() * 2 * width + torch.arange(2 * width, device=device)).argsort(dim=1)[:, :width]
        if tree is not None:
            tree.record(origin[0], token[0], top_scores[0], keep[0], width, bool(last[0]))
        scores = top_scores.gather(1, keep)
        rows = (origin.gather(1, keep) + torch.arange(groups, device=device)[:, None] * beams).view(-1)
        tokens = torch.cat([tokens.index_select(0, rows), token.gather(1, keep).view(-1, 1)], dim=1)
        live, beams = _Rows(reorder_caches(live.caches, rows, beams=width), live.mask, live.max_tokens), width

        ended = [at_limit or stop.done(finished[i], best_ended[i]) for at_limit, i in zip(last.tolist(), ids.tolist())]
        done = torch.tensor(ended, device=device)
        if done.all():
            break
        if done.any():  # drop finished sentences from the batch
            going = (~done).nonzero().squeeze(1)
            rows = (going[:, None] * width + torch.arange(width, device=device)).view(-1)
            ids, scores, tokens, live = ids[going], scores[going], tokens.index_select(0, rows), live.select(rows, going)

    results = []
    for hypotheses in finished:
        hypotheses.sort(key=lambda h: h.score, reverse=True)
        results.append([_hypothesis(h.tokens, h.log_prob, h.score) for h in hypotheses[:n_best]])
    if tree is not None:
        tree.mark_best(results[0])
    return results


@dataclass(frozen=True)
class _StoppingRule:
    """When a sentence's beam search stops before its length limit (CTranslate2's rule)."""

    enough: int  # finished hypotheses that end the search: round(beam_size · patience)
    n_best: int
    raw_scores: bool  # length penalty 0: hypotheses are ranked by log-probability alone

    def done(self, finished: list[Hypothesis], best_ended: bool) -> bool:
        if self.raw_scores:
            return best_ended and len(finished) >= self.n_best
        return len(finished) >= self.enough


@dataclass
class TreeNode:
    """One candidate beam search weighed: a piece appended to its parent's partial translation."""

    parent: int | None  # index of the node it extends; None for the start
    token: int
    step: int  # 0 for the start (<s>), then the position of `token`
    log_prob: float  # log P of the whole path up to and including `token`
    status: str  # "start", "kept" (a live beam), "finished" (ended with </s> or cut at the length limit) or "dropped"
    rank: int | None = None  # place in the final n-best (0 = the translation), None if not in it


@dataclass
class BeamTree:
    """Every candidate of each step of a one-sentence beam search, as a tree over `nodes`.

    At each step the search ranks 2·width continuations of the live beams: the best `width`
    that do not end stay live ("kept"), those among the top `width` that end with </s> are
    "finished" (at the length limit all of the top `width` are), the rest are "dropped". A
    node's `log_prob` minus its parent's is the model's log-probability of its token after that
    path. Beam size 1 with length penalty 0 is greedy search: one branch, with the runner-up of each step dropped beside it.
    """

    nodes: list[TreeNode] = field(default_factory=lambda: [TreeNode(None, BOS_ID, 0, 0.0, "start")])
    rows: list[int] = field(default_factory=lambda: [0])  # the node each live beam row ends in

    def record(self, origin: Tensor, token: Tensor, scores: Tensor, keep: Tensor, width: int, last: bool = False) -> None:
        """One step: [2·width] candidates (beam row, token, path log-probability) and the kept
        indices; at the `last` step (the length limit) the top `width` all finish."""
        step = self.nodes[-1].step + 1
        kept = keep.tolist()
        new_rows = dict.fromkeys(kept, -1)
        for k, (row, piece, score) in enumerate(zip(origin.tolist(), token.tolist(), scores.tolist())):
            if score == -torch.inf:  # ruled out by a prefix
                continue
            ends = k < width and (last or piece == EOS_ID)
            status = "finished" if ends else "kept" if k in new_rows else "dropped"
            self.nodes.append(TreeNode(self.rows[row], piece, step, score, status))
            if k in new_rows:
                new_rows[k] = len(self.nodes) - 1
        self.rows = [new_rows[k] for k in kept]

    def path(self, index: int) -> list[int]:
        """The tokens from the start to node `index` (without <s>)."""
        tokens = []
        while self.nodes[index].parent is not None:
            tokens.append(self.nodes[index].token)
            index = self.nodes[index].parent
        return tokens[::-1]

    def mark_best(self, hypotheses: list[Hypothesis]) -> None:
        """Mark the nodes where the final n-best end (a hypothesis cut at the length limit ends
        in a node that is not </s>)."""
        for rank, hypothesis in enumerate(hypotheses):
            for index in range(len(self.nodes) - 1, 0, -1):
                node = self.nodes[index]
                path = self.path(index)
                ends = path[:-1] if node.token == EOS_ID else path
                if node.rank is None and ends == hypothesis.tokens and abs(node.log_prob - hypothesis.log_prob) < 1e-4:
                    node.rank = rank
                    break


@torch.inference_mode()
def sample(
    model: Transformer,
    source: Tensor,
    n: int = 5,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    limits: SearchLimits = DEFAULT_LIMITS,
    prefix: Prefix = None,
) -> list[list[Hypothesis]]:
    """`n` random translations per sentence, drawn from the (reshaped) next-piece distribution.

    `temperature` < 1 sharpens it, `top_k` keeps only the k most probable pieces, `top_p` the
    smallest set whose probability reaches p (nucleus sampling). Reported log-probabilities are
    the model's own (temperature 1, unfiltered), so candidates can be compared fairly.
    """
    if temperature <= 0:
        raise ValueError("temperature must be positive; use greedy search for temperature 0")
    if not 0 < top_p <= 1:
        raise ValueError("top_p must be in (0, 1]")
    generator = torch.Generator(device=source.device).manual_seed(seed)
    batch = source.shape[0]
    expand = torch.arange(batch, device=source.device).repeat_interleave(n)

    def draw(log_probs: Tensor) -> Tensor:
        return torch.multinomial(_filtered(log_probs, temperature, top_k, top_p), 1, generator=generator).squeeze(1)

    rows = _extend(model, source.index_select(0, expand), limits, draw, prefix)
    return [rows[b * n : (b + 1) * n] for b in range(batch)]


def _filtered(log_probs: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """Probabilities after temperature, top-k and top-p; rows still sum to 1."""
    probs = (log_probs / temperature).softmax(dim=-1)
    if top_k > 0:
        kth = probs.topk(min(top_k, probs.shape[-1]), dim=-1).values[:, -1:]
        probs = probs.masked_fill(probs < kth, 0.0)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        cumulative = sorted_probs.cumsum(dim=-1) / sorted_probs.sum(dim=-1, keepdim=True)
        # Drop a piece when the pieces before it already reach top_p (the first always stays).
        drop_sorted = (cumulative - sorted_probs / sorted_probs.sum(dim=-1, keepdim=True)) >= top_p
        probs = probs.masked_fill(drop_sorted.scatter(1, order, drop_sorted), 0.0)
    return probs / probs.sum(dim=-1, keepdim=True)


@torch.inference_mode()
def step_by_step(
    model: Transformer,
    source: Tensor,
    top_k: int = 10,
    forced: list[int] | None = None,
) -> list[Step]:
    """The decoder as a language model, one sentence: at each step the top-k next pieces with
    their probabilities, then the greedy choice — or the `forced` token, to inspect a given
    translation. Stops at </s>."""
    caches, mask = _start(model, source[:1])
    next_log_probs = _decoder_step(model)
    max_tokens = int(DEFAULT_LIMITS.per_sentence(source[:1], model.config.max_positions)[0])
    if forced is not None:
        max_tokens = min(len(forced) + 1, model.config.max_positions - 1)
    previous = torch.tensor([[BOS_ID]], device=source.device)
    steps = []
    for step in range(max_tokens):
        probs = next_log_probs(previous, caches, mask, step)[0].exp()
        top = probs.topk(min(top_k, probs.shape[0]))
        if forced is not None:
            chosen = forced[step] if step < len(forced) else EOS_ID
        else:
            chosen = int(top.indices[0])
        steps.append(Step(list(zip(top.indices.tolist(), top.values.tolist())), chosen, float(probs[chosen])))
        if chosen == EOS_ID:
            break
        previous = torch.tensor([[chosen]], device=source.device)
    return steps


@torch.inference_mode()
def score_tokens(model: Transformer, source: Tensor, targets: list[list[int]]) -> list[list[float]]:
    """log P(y_t | y_<t, x) of every token of given translations, </s> included: one
    teacher-forced pass over [B, S] sources and B target id lists (without <s> and </s>).
    Their sum is the hypothesis's log-probability, except for a translation cut at the length
    limit: its search never produced the </s> scored here."""
    width = max(len(t) for t in targets) + 1
    target_in = torch.full((len(targets), width), PAD_ID, dtype=torch.long, device=source.device)
    target_out = target_in.clone()
    for row, ids in enumerate(targets):
        target_in[row, : len(ids) + 1] = torch.tensor([BOS_ID, *ids])
        target_out[row, : len(ids) + 1] = torch.tensor([*ids, EOS_ID])
    log_probs = model.logits(model(source, target_in)).float().log_softmax(dim=-1)
    chosen = log_probs.gather(2, target_out[:, :, None]).squeeze(2)  # [B, T]
    return [chosen[row, : len(ids) + 1].tolist() for row, ids in enumerate(targets)]
