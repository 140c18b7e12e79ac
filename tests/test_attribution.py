"""Input attribution by integrated gradients (core/attribution.py, issue 16 part 2).

Completeness (the attributions of a piece add up to f(sentence) − f(baseline)) is checked on a
function whose integral is known, on a random model and on the trained tiny model; a position
hidden from attention gets exactly zero."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.attribution import attribute, integrated_gradients
from core.config import ModelConfig
from core.model import Transformer
from core.vocab import EOS_ID, PAD_ID

SENTENCE = "The dog runs in the garden."


def random_model(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=50, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2, dropout=0.0, max_positions=64
    )
    return Transformer(config).eval()


def test_integrated_gradients_of_a_known_function() -> None:
    """f(x) = Σ_s w_s·x_s² per output: IG_s = w_s·(x_s² − x'_s²) exactly (the path is a straight line)."""
    torch.manual_seed(0)
    inputs, baseline = torch.randn(4, 3), torch.randn(4, 3)
    weights = torch.tensor([[1.0, 2.0, 0.0, -1.0], [0.5, 0.0, 3.0, 1.0]])  # [T=2, S=4]

    def f(x: torch.Tensor) -> torch.Tensor:  # [N, S, d] -> [N, T]
        return (x**2).sum(-1) @ weights.T

    found = integrated_gradients(f, inputs, baseline, steps=64)
    expected = weights * ((inputs**2).sum(-1) - (baseline**2).sum(-1))
    assert torch.allclose(found.scores, expected, atol=1e-3)
    assert torch.allclose(found.scores.sum(1), found.difference, atol=1e-3) and found.gap < 1e-3


def test_completeness_on_a_transformer() -> None:
    model = random_model()
    source = torch.tensor([[5, 6, 7, 8, 9, EOS_ID]])
    target = [11, 12, 13, EOS_ID]
    coarse, fine = attribute(model, source, target, steps=8), attribute(model, source, target, steps=256)
    assert fine.scores.shape == (4, 6)
    assert torch.allclose(fine.scores.sum(1), fine.difference, atol=2e-3)
    assert fine.gap <= coarse.gap + 1e-6  # more points, closer to the integral
    assert (fine.difference.abs() > 1e-3).any()  # not trivially zero


def test_a_position_hidden_from_attention_gets_zero() -> None:
    """Position 2 holds a real piece but the mask hides it (as padding is hidden): no attribution."""
    model = random_model(1)
    source = torch.tensor([[5, 6, 7, 8, 9, EOS_ID]])
    mask = model.source_mask(source).clone()
    mask[..., 2] = False
    found = attribute(model, source, [11, 12, EOS_ID], steps=16, mask=mask)
    assert torch.all(found.scores[:, 2] == 0)
    assert torch.all(found.scores[:, [0, 1, 3, 4, 5]].abs().sum(0) > 0)
    padded = attribute(model, torch.tensor([[5, 6, EOS_ID, PAD_ID, PAD_ID]]), [11, EOS_ID], steps=16)
    assert torch.all(padded.scores[:, 3:] == 0)


def test_translator_attribution(tiny_translator) -> None:
    view = tiny_translator.attribution(SENTENCE, "en", "de", steps=64)
    attention = tiny_translator.attention(SENTENCE, "en", "de")
    assert view.translation.text == tiny_translator.translate(SENTENCE, "en", "de")[0].text
    assert view.source_pieces == attention.source_pieces and view.target_pieces == attention.target_pieces
    assert view.scores.shape == attention.cross.shape[2:]
    np.testing.assert_allclose(view.scores.sum(1), view.difference, atol=0.05)
    assert view.gap < 0.05
    with pytest.raises(ValueError, match="Enter a sentence"):
        tiny_translator.attribution("  ", "en", "de")
