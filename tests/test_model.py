"""The Transformer itself: caching, attention maps, padding, and search invariants."""

from __future__ import annotations

import torch

from core.config import ModelConfig
from core.decoding import beam_search, greedy, sample, step_by_step
from core.model import AttentionMaps, Transformer, attention, reorder_caches, subsequent_mask
from core.vocab import BOS_ID, EOS_ID, PAD_ID


def random_model(seed: int = 0, positions: str = "sinusoidal") -> Transformer:
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=50,
        d_model=32,
        n_heads=4,
        d_ff=64,
        n_encoder_layers=2,
        n_decoder_layers=2,
        dropout=0.0,
        max_positions=64,
        positions=positions,
    )
    return Transformer(config).eval()


def test_attention_is_softmax_of_scaled_scores_times_values() -> None:
    torch.manual_seed(0)
    query, key, value = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)
    mask = torch.tensor([True, True, True, False, False])
    context, weights = attention(query, key, value, mask)
    expected = torch.softmax((query @ key.transpose(-2, -1) / 8**0.5).masked_fill(~mask, float("-inf")), dim=-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(context, expected @ value)
    assert float(weights[..., 3:].abs().max()) == 0.0


def test_subsequent_mask_lets_each_query_see_itself_and_the_past() -> None:
    assert subsequent_mask(3, 3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # the last 2 of 4 positions as queries: (incremental steps see the whole cache)
    assert subsequent_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]


def test_incremental_decoding_matches_full_recomputation() -> None:
    model = random_model()
    source = torch.tensor([[5, 6, 7, 8, EOS_ID], [9, 10, EOS_ID, PAD_ID, PAD_ID]])
    target = torch.tensor([[BOS_ID, 11, 12, 13, 14], [BOS_ID, 15, 16, 17, 18]])
    with torch.no_grad():
        full = model.logits(model(source, target))
        caches = model.start_cache(model.encode(source))
        mask = model.source_mask(source)
        steps = [model.logits(model.decode(target[:, t : t + 1], caches, mask, offset=t, incremental=True)) for t in range(target.shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)


def test_beams_sharing_their_sentences_source_decode_as_with_a_copy_each() -> None:
    """Beam search keeps a sentence's source keys/values once for its beams (`LayerCache.beams`);
    a decoder step then gives each beam what it gets with a copy of them, mask included."""
    model = random_model(seed=3)
    source = torch.tensor([[5, 6, 7, 8, EOS_ID], [9, 10, EOS_ID, PAD_ID, PAD_ID]])
    beams, rows = 3, torch.arange(2).repeat_interleave(3)
    tokens = torch.randint(4, 50, (6, 1))
    with torch.inference_mode():
        mask = model.source_mask(source)
        start = model.start_cache(model.encode(source))
        shared = reorder_caches(start, rows, beams=beams)
        copied = reorder_caches(start, rows, sentences=rows)
        got = model.logits(model.decode(tokens, shared, mask, incremental=True))
        expected = model.logits(model.decode(tokens, copied, mask[rows], incremental=True))
        assert shared[0].cross_keys.shape[0] == 2 and copied[0].cross_keys.shape[0] == 6
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_attention_maps_are_distributions_and_match_fast_path() -> None:
    model = random_model(positions="learned")
    source = torch.tensor([[5, 6, 7, EOS_ID, PAD_ID]])
    target = torch.tensor([[BOS_ID, 8, 9]])
    maps = AttentionMaps()
    with torch.no_grad():
        with_maps = model(source, target, maps=maps)
        fast = model(source, target)
    torch.testing.assert_close(with_maps, fast, rtol=1e-4, atol=1e-5)
    assert len(maps.encoder_self) == len(maps.cross) == len(maps.decoder_self) == 2
    for weights in maps.encoder_self + maps.decoder_self + maps.cross:
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    # Padding gets no attention, and the decoder never looks ahead.
    assert float(maps.cross[0][..., -1].abs().max()) == 0.0
    assert float(maps.decoder_self[0][0, :, 0, 1:].abs().max()) == 0.0


def test_padding_changes_no_output() -> None:
    model = random_model()
    alone = torch.tensor([[5, 6, 7, EOS_ID]])
    batch = torch.tensor([[5, 6, 7, EOS_ID, PAD_ID, PAD_ID, PAD_ID], [8, 9, 10, 11, 12, 13, EOS_ID]])
    assert greedy(model, alone)[0].tokens == greedy(model, batch)[0].tokens
    assert beam_search(model, alone, 3)[0][0].tokens == beam_search(model, batch, 3)[0][0].tokens


def test_the_encoder_skips_much_padding_and_gives_each_sentence_its_own_states() -> None:
    """A batch with much padding runs the encoder's position-wise layers on its real tokens only
    (`fast.RealTokens.if_padded`): each sentence's states are those it has alone, and the
    padded positions hold zeros, which cross-attention never reads."""
    model = random_model(seed=2)
    sentences = [[5, 6, 7, EOS_ID], [8, 9, 10, 11, 12, 13, 14, 15, EOS_ID], [16, EOS_ID]]
    batch = torch.full((3, 9), PAD_ID)
    for row, ids in enumerate(sentences):
        batch[row, : len(ids)] = torch.tensor(ids)
    with torch.inference_mode():
        memory = model.encode(batch)
        for row, ids in enumerate(sentences):
            torch.testing.assert_close(memory[row, : len(ids)], model.encode(torch.tensor([ids]))[0], rtol=1e-5, atol=1e-6)
        assert float(memory[batch == PAD_ID].abs().max()) == 0.0
        full = batch.clone()
        full[full == PAD_ID] = 20  # no padding: the layers run on every position
        assert float(model.encode(full)[batch == PAD_ID].abs().min()) > 0.0


def test_beam_of_one_is_greedy() -> None:
    model = random_model(seed=3)
    source = torch.tensor([[5, 6, 7, EOS_ID, PAD_ID], [9, 10, 11, 12, EOS_ID]])
    for g, b in zip(greedy(model, source), beam_search(model, source, beam_size=1, length_penalty=0.0)):
        assert b[0].tokens == g.tokens
        assert abs(b[0].log_prob - g.log_prob) < 1e-4


def test_beam_search_n_best_is_sorted_and_distinct() -> None:
    model = random_model(seed=4)
    hypotheses = beam_search(model, torch.tensor([[5, 6, 7, EOS_ID]]), beam_size=4, n_best=4)[0]
    scores = [h.score for h in hypotheses]
    assert scores == sorted(scores, reverse=True)
    assert len({tuple(h.tokens) for h in hypotheses}) == len(hypotheses) == 4


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy() -> None:
    model = random_model(seed=5)
    source = torch.tensor([[5, 6, 7, 8, EOS_ID]])
    best = beam_search(model, source, beam_size=8, length_penalty=0.0)[0][0]
    assert best.log_prob >= greedy(model, source)[0].log_prob - 1e-5


def test_sampling_is_seeded_and_filters() -> None:
    model = random_model(seed=6)
    source = torch.tensor([[5, 6, 7, EOS_ID]])
    first = [h.tokens for h in sample(model, source, n=4, seed=11)[0]]
    again = [h.tokens for h in sample(model, source, n=4, seed=11)[0]]
    assert first == again
    # top_k=1 leaves one choice per step: every candidate is the greedy translation.
    greedy_tokens = greedy(model, source)[0].tokens
    assert all(h.tokens == greedy_tokens for h in sample(model, source, n=3, top_k=1, seed=2)[0])
    assert all(h.tokens == greedy_tokens for h in sample(model, source, n=3, top_p=1e-6, seed=2)[0])


def test_step_by_step_follows_greedy_and_reports_distributions() -> None:
    model = random_model(seed=7)
    source = torch.tensor([[5, 6, 7, EOS_ID]])
    steps = step_by_step(model, source, top_k=5)
    assert [s.chosen for s in steps if s.chosen != EOS_ID] == greedy(model, source)[0].tokens  # a random model runs to the limit
    for s in steps:
        probabilities = [p for _, p in s.candidates]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6
    forced = step_by_step(model, source, forced=[20, 21])
    assert [s.chosen for s in forced] == [20, 21, EOS_ID]


def test_length_limit_is_respected() -> None:
    model = random_model(seed=8)
    source = torch.tensor([[5, 6, EOS_ID]])
    from core.decoding import SearchLimits

    for most in (1, 2, 5):  # tokens, </s> included: a translation cut at the limit has `most` pieces
        limits = SearchLimits(max_len_a=0.0, max_len_b=most)
        assert len(greedy(model, source, limits)[0].tokens) <= most
        found = beam_search(model, source, 3, n_best=3, limits=limits)[0]
        assert len(found) == 3 and all(len(h.tokens) <= most for h in found)
    never_ends = SearchLimits(max_len_a=0.0, max_len_b=5)  # this random model never produces </s> in 5 steps
    assert len(greedy(model, source, never_ends)[0].tokens) == 5
    assert [len(h.tokens) for h in beam_search(model, source, 3, n_best=3, limits=never_ends)[0]] == [5, 5, 5]  # cut at the limit


def test_training_loss_on_packed_real_tokens_equals_the_padded_computation() -> None:
    """`Transformer.loss` skips target padding inside the decoder; loss and gradients must be
    those of the plain padded forward pass."""
    model = random_model(seed=4)
    source = torch.randint(4, 50, (5, 9))
    source[1, 6:] = PAD_ID
    target_out = torch.randint(4, 50, (5, 8))
    target_out[2, 3:] = PAD_ID
    target_out[4, 6:] = PAD_ID
    target_in = torch.cat([torch.full((5, 1), BOS_ID), target_out[:, :-1]], dim=1)
    target_in[2, 4:] = PAD_ID
    target_in[4, 7:] = PAD_ID

    loss, count = model.loss(source, target_in, target_out, label_smoothing=0.1)
    loss.backward()
    packed_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    real = target_out != PAD_ID
    hidden = model(source, target_in)
    reference = torch.nn.functional.cross_entropy(model.logits(hidden[real]), target_out[real], label_smoothing=0.1)
    reference.backward()

    assert count == int(real.sum()) == 33
    assert torch.allclose(loss, reference, atol=1e-6)
    for name, p in model.named_parameters():
        assert torch.allclose(packed_grads[name], p.grad, atol=1e-6), name
