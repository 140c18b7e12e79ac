"""Input attribution: which source pieces made the model produce each piece of its translation.

Integrated gradients (Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep Networks")
over the source embeddings. For the produced piece t, f_t is the model's probability of that
piece (teacher-forced on the translation, so every row sees the same target prefix as the search
did). The attribution of source piece i is

    IG_i = (x_i − x'_i) · ∫₀¹ ∂f_t(x' + α(x − x')) / ∂x_i dα       (a dot product over d_model)

where x is the embedded source and x' the baseline: the same positions holding the padding piece
(its embedding is zero, so the baseline keeps the positional encodings and drops every word). The
integral is a midpoint Riemann sum over `steps` points (the paper suggests 20 to 300; DEFAULT_STEPS
keeps the Attention tab quick). Its defining property, completeness, is what the tests check: the
attributions of a piece add up to f_t(x) − f_t(x'), up to the error of the sum, which
`Attribution.gap` reports.

Attention and attribution can disagree. Attention is where the decoder looked; attribution is
what changed the output. A head may look at </s> or at the tag as a resting place while the
piece is decided by a word it barely looks at, through the encoder's mixing of positions.

The probability is taken rather than the log-probability: it is bounded, so a baseline that
makes a piece nearly impossible does not dominate the scale with a huge negative number.

`integrated_gradients` takes any differentiable function of the embeddings, so the same code
serves core's model (`piece_probabilities`) and the Hugging Face engine (`core.hf`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from core.model import Transformer
from core.vocab import BOS_ID, PAD_ID

DEFAULT_STEPS = 32  # points of the Riemann sum; the gap to completeness is reported with the result


@dataclass
class Attribution:
    scores: Tensor  # [T, S]: attribution of source piece s to produced piece t
    difference: Tensor  # [T]: f_t(x) − f_t(baseline), what each row of `scores` should add up to
    probabilities: Tensor  # [T]: f_t(x), the probability of each produced piece

    @property
    def gap(self) -> float:
        """The largest |Σ_s scores[t, s] − difference[t]|: how far the Riemann sum is from completeness."""
        return float((self.scores.sum(dim=1) - self.difference).abs().max()) if len(self.difference) else 0.0


def integrated_gradients(
    f: Callable[[Tensor], Tensor], inputs: Tensor, baseline: Tensor, steps: int = DEFAULT_STEPS, batch: int = 32
) -> Attribution:
    """Integrated gradients of each output of `f` with respect to each input position.

    `f` maps embeddings [N, S, d] to outputs [N, T]; `inputs` and `baseline` are [S, d].
    Returns scores [T, S] (summed over d), f(inputs) − f(baseline) and f(inputs).
    `batch` path points go through `f` at once.
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    inputs, baseline = inputs.detach().float(), baseline.detach().float()
    delta = inputs - baseline  # [S, d]
    alphas = (torch.arange(steps, dtype=torch.float32, device=inputs.device) + 0.5) / steps  # midpoints
    with torch.no_grad():
        ends = f(torch.stack([inputs, baseline])).float()  # [2, T]
    outputs = ends.shape[1]
    gradient_sum = torch.zeros(outputs, *inputs.shape, device=inputs.device)  # [T, S, d]
    with torch.enable_grad():
        for start in range(0, steps, batch):
            alpha = alphas[start : start + batch, None, None]
            path = (baseline + alpha * delta).requires_grad_(True)  # [n, S, d]
            values = f(path).float()  # [n, T]
            for t in range(outputs):
                (gradient,) = torch.autograd.grad(values[:, t].sum(), path, retain_graph=t + 1 < outputs)
                gradient_sum[t] += gradient.sum(dim=0)
    scores = (gradient_sum / steps * delta).sum(dim=-1)  # [T, S]
    return Attribution(scores.detach(), (ends[0] - ends[1]).detach(), ends[0].detach())


def piece_probabilities(
    model: Transformer, source_ids: Tensor, target_ids: list[int], mask: Tensor | None = None
) -> Callable[[Tensor], Tensor]:
    """f for `integrated_gradients` on core's model: embedded sources [N, S, d_model] -> the
    probability of each piece of `target_ids` (the produced pieces and </s>) [N, T], teacher-forced.

    `source_ids` [1, S] gives the mask (`Transformer.source_mask`) unless `mask` [1, 1, 1, S] is
    given; positions it hides can never change the output.
    """
    mask = model.source_mask(source_ids) if mask is None else mask
    target = torch.tensor(target_ids, device=source_ids.device)
    decoder_in = torch.tensor([[BOS_ID, *target_ids[:-1]]], device=source_ids.device)  # [1, T]

    def f(embedded: Tensor) -> Tensor:
        n = embedded.shape[0]
        memory = model.encode_embedded(embedded, mask.expand(n, -1, -1, -1))
        hidden = model.decode(decoder_in.expand(n, -1), model.start_cache(memory), mask.expand(n, -1, -1, -1))
        probs = model.logits(hidden).float().softmax(dim=-1)  # [n, T, vocab]
        return probs[:, torch.arange(len(target_ids)), target]

    return f


def attribute(
    model: Transformer, source_ids: Tensor, target_ids: list[int], steps: int = DEFAULT_STEPS, mask: Tensor | None = None
) -> Attribution:
    """Integrated gradients of each piece of `target_ids` over the embedded `source_ids` [1, S],
    from a baseline of padding pieces at the same positions (`Transformer.embed` of PAD)."""
    with torch.no_grad():
        inputs = model.embed(source_ids)[0]  # [S, d_model]
        baseline = model.embed(torch.full_like(source_ids, PAD_ID))[0]
    return integrated_gradients(piece_probabilities(model, source_ids, target_ids, mask), inputs, baseline, steps)
