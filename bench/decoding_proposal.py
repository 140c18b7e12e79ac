"""A prototype of proposed changes to core/decoding.py (and one to core/model.py), kept out of core.

    python bench/decoding_proposal.py [--checkpoint checkpoints/multi30k-4lang] [--sentences 1000]

The benchmarks measure core as it is; this file only shows what the proposed changes would give,
on the same test set, and checks that they leave every output unchanged. Proposed:

1. Prune finished sentences from the batch (greedy and beam). Today every row of a batch is
   decoded until the *last* sentence of the batch ends: a finished greedy row keeps feeding PAD,
   a finished beam group keeps running with -inf scores. Dropping their rows from the caches,
   the source mask and the token history (one `index_select` when some sentence finishes) makes
   each step cost only what is still being decoded. Outputs are unchanged.
2. Do not reorder the cross-attention keys/values in beam search. `reorder_caches` copies them
   every step (`index_select` over [B·K, H, S, d_k] per layer), but beams only ever move within
   their own sentence and every beam of a sentence holds the same source keys/values, so the copy
   is an identity. Only the self-attention cache needs the reorder.
3. (core/model.py) For one-query steps (incremental decoding) compute attention explicitly,
   softmax(QKᵀ/√d_k)·V with two small batched matmuls, instead of `scaled_dot_product_attention`,
   whose CPU kernel is tuned for long queries and is slower for q_len = 1.

`python bench/decoding_proposal.py` prints core vs proposal time and asserts identical outputs.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from torch import Tensor

from core.decoding import Hypothesis, SearchLimits, _force_end, _hypothesis, _next_log_probs, _start
from core.model import BOS_ID, EOS_ID, LayerCache, MultiHeadAttention, Transformer


def _select(caches: list[LayerCache], rows: Tensor, cross: bool = True) -> list[LayerCache]:
    """Keep/duplicate batch rows of the self-attention caches (and of the cross ones if `cross`)."""
    return [
        LayerCache(
            None if c.self_keys is None else c.self_keys.index_select(0, rows),
            None if c.self_values is None else c.self_values.index_select(0, rows),
            c.cross_keys.index_select(0, rows) if cross else c.cross_keys,
            c.cross_values.index_select(0, rows) if cross else c.cross_values,
        )
        for c in caches
    ]


@torch.inference_mode()
def greedy(model: Transformer, source: Tensor, limits: SearchLimits = SearchLimits()) -> list[Hypothesis]:
    """core.decoding.greedy with finished rows pruned from the batch."""
    batch = source.shape[0]
    caches, mask = _start(model, source)
    max_tokens = limits.per_sentence(source, model.config.max_positions)
    alive = torch.arange(batch)  # original row of each decoded row
    tokens = torch.full((batch, 1), BOS_ID, dtype=torch.long)
    log_prob = torch.zeros(batch)
    results: list[Hypothesis | None] = [None] * batch
    for step in range(int(max_tokens.max())):
        log_probs = _force_end(_next_log_probs(model, tokens[:, -1:], caches, mask, step), step + 1 >= max_tokens)
        best = log_probs.argmax(dim=-1)
        log_prob = log_prob + log_probs.gather(1, best[:, None]).squeeze(1)
        tokens = torch.cat([tokens, best[:, None]], dim=1)
        ended = best == EOS_ID
        if ended.any():
            for row in ended.nonzero().squeeze(1).tolist():
                lp = float(log_prob[row])
                results[int(alive[row])] = _hypothesis(tokens[row, 1:].tolist(), lp, lp)
            keep = (~ended).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            caches, mask = _select(caches, keep), mask.index_select(0, keep)
            tokens, log_prob = tokens.index_select(0, keep), log_prob.index_select(0, keep)
            max_tokens, alive = max_tokens.index_select(0, keep), alive.index_select(0, keep)
    for row, original in enumerate(alive.tolist()):  # only if the loop ran out (it forces </s> first)
        if results[original] is None:
            lp = float(log_prob[row])
            results[original] = _hypothesis(tokens[row, 1:].tolist(), lp, lp)
    return results  # type: ignore[return-value]


def _done(finished: list[list[Hypothesis]], scores: Tensor, length: int, width: int, alpha: float) -> Tensor:
    """Same rule as core.decoding._beams_done; one tensor → list conversion instead of one per sentence."""
    best_live = (scores.max(dim=1).values / length ** alpha).tolist()
    flags = []
    for hypotheses, live in zip(finished, best_live):
        if len(hypotheses) < width:
            flags.append(False)
        else:
            flags.append(live <= sorted(h.score for h in hypotheses)[-width])
    return torch.tensor(flags, dtype=torch.bool)


@torch.inference_mode()
def beam_search(model: Transformer, source: Tensor, beam_size: int = 4, length_penalty: float = 1.0,
                n_best: int = 1, limits: SearchLimits = SearchLimits()) -> list[list[Hypothesis]]:
    """core.decoding.beam_search with (1) finished sentences pruned and (2) no cross-cache reorder."""
    batch, width = source.shape[0], beam_size
    n_best = min(n_best, width)
    caches, mask = _start(model, source)
    expand = torch.arange(batch).repeat_interleave(width)
    caches, mask = _select(caches, expand), mask.index_select(0, expand)
    max_tokens = limits.per_sentence(source, model.config.max_positions)
    beam_max = max_tokens.repeat_interleave(width)
    scores = torch.full((batch, width), -torch.inf)
    scores[:, 0] = 0.0
    tokens = torch.full((batch * width, 1), BOS_ID, dtype=torch.long)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    alive = list(range(batch))  # original sentence of each decoded group of `width` rows

    for step in range(int(max_tokens.max())):
        groups = len(alive)
        log_probs = _force_end(_next_log_probs(model, tokens[:, -1:], caches, mask, step), step + 1 >= beam_max)
        vocab = log_probs.shape[-1]
        candidates = (scores.view(-1, 1) + log_probs).view(groups, width * vocab)
        top_scores, top_index = candidates.topk(2 * width, dim=1)
        origin, token = top_index // vocab, top_index % vocab
        is_end = token == EOS_ID
        length = step + 1
        for g, k in is_end[:, :width].nonzero().tolist():
            row = int(g * width + origin[g, k])
            raw = float(top_scores[g, k])
            finished[alive[g]].append(Hypothesis(tokens[row, 1:].tolist(), raw, raw / length ** length_penalty))
        keep = (is_end.long() * 2 * width + torch.arange(2 * width)).argsort(dim=1)[:, :width]
        scores = top_scores.gather(1, keep)
        rows = (origin.gather(1, keep) + torch.arange(groups)[:, None] * width).view(-1)
        tokens = torch.cat([tokens.index_select(0, rows), token.gather(1, keep).view(-1, 1)], dim=1)
        caches = _select(caches, rows, cross=False)  # beams stay within their sentence: cross K/V unchanged

        done = _done([finished[a] for a in alive], scores, length + 1, width, length_penalty)
        if done.all():
            alive = []
            break
        if done.any():
            kept = (~done).nonzero().squeeze(1)
            kept_rows = (kept[:, None] * width + torch.arange(width)).view(-1)
            caches, mask = _select(caches, kept_rows), mask.index_select(0, kept_rows)
            tokens, beam_max = tokens.index_select(0, kept_rows), beam_max.index_select(0, kept_rows)
            scores = scores.index_select(0, kept)
            alive = [alive[g] for g in kept.tolist()]

    live = {original: g for g, original in enumerate(alive)}
    results = []
    for b in range(batch):
        hypotheses = finished[b]
        if not hypotheses and b in live:
            g = live[b]
            hypotheses = [Hypothesis(tokens[g * width + k, 1:].tolist(), float(scores[g, k]), float(scores[g, k]))
                          for k in range(width)]
        hypotheses.sort(key=lambda h: h.score, reverse=True)
        results.append([_hypothesis(h.tokens, h.log_prob, h.score) for h in hypotheses[:n_best]])
    return results


@contextlib.contextmanager
def explicit_single_query_attention():
    """Proposal 3, applied temporarily: one-query, no-weights, eval-mode attention as two matmuls."""
    original = MultiHeadAttention.forward

    def forward(self, x, keys, values, mask=None, causal=False, need_weights=False):
        if need_weights or self.training or x.shape[1] != 1:
            return original(self, x, keys, values, mask, causal, need_weights)
        queries = self.split_heads(self.query(x))
        scores = (queries @ keys.transpose(-2, -1)) * (1.0 / math.sqrt(self.d_k))
        if mask is not None:
            scores = scores.masked_fill(~mask, -math.inf)
        context = scores.softmax(dim=-1) @ values
        return self.output(context.transpose(1, 2).reshape(x.shape[0], 1, self.n_heads * self.d_k)), None

    MultiHeadAttention.forward = forward
    try:
        yield
    finally:
        MultiHeadAttention.forward = original


def main(argv: list[str] | None = None) -> dict:
    from bench import common
    from bench.decode_speed import sorted_chunks
    from core import decoding

    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=common.DEFAULT_CHECKPOINT)
    parser.add_argument("--sentences", type=int, default=1000)
    args = parser.parse_args(argv)
    n_threads = common.threads(args.threads)
    import core

    translator = core.load(args.checkpoint)
    sources, _ = common.test_set()
    chunks = [common.pad(ids) for _, ids in sorted_chunks(translator, sources[:args.sentences])]
    model = translator.model

    def run(search, beam: int) -> tuple[float, list[list[int]]]:
        start, out = time.perf_counter(), []
        for source in chunks:
            if beam == 1:
                out += [h.tokens for h in search(model, source)]
            else:
                out += [h[0].tokens for h in search(model, source, beam)]
        return time.perf_counter() - start, out

    for search in (decoding.greedy, greedy):  # warm-up
        search(model, chunks[-1][:4])
    rows, results = [], {}
    for beam, ours, theirs in ((1, decoding.greedy, greedy), (4, decoding.beam_search, beam_search)):
        base_s, base = run(ours, beam)
        new_s, new = run(theirs, beam)
        with explicit_single_query_attention():
            attn_s, attn = run(theirs, beam)
        same = base == new == attn
        results[f"beam{beam}"] = {"core_s": base_s, "proposal_s": new_s, "proposal_plus_attention_s": attn_s,
                                  "identical_outputs": same}
        rows.append([f"beam {beam}", len(base) / base_s, len(base) / new_s, len(base) / attn_s,
                     f"{base_s / attn_s:.2f}x", "yes" if same else "NO"])
    print(common.markdown_table(["search", "core sent/s", "1+2 pruned, no cross reorder", "+3 explicit attention",
                                 "speed-up", "identical outputs"], rows))
    print(f"({len(chunks)} batches of up to 64 sentences, {n_threads} threads, search only: no tokenisation)")
    return results


if __name__ == "__main__":
    main()
