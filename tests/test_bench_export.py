"""core/export.py: a core model exported to Hugging Face M2M100 computes the same function.

`transformers` is a benchmark dependency (requirements-bench.txt), not a dev dependency, so the
test is skipped when it is not installed.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers", reason="transformers is not installed (pip install -r requirements-bench.txt)")

from core.config import ModelConfig  # noqa: E402
from core.decoding import SearchLimits, greedy  # noqa: E402
from core.export import to_m2m100  # noqa: E402
from core.model import Transformer  # noqa: E402
from core.vocab import BOS_ID, EOS_ID, PAD_ID  # noqa: E402


def random_model(positions: str = "sinusoidal") -> Transformer:
    """A tiny core model with random weights large enough that its outputs depend on the input,
    and a nudge towards </s> so greedy hypotheses end at different lengths."""
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=300,
        d_model=64,
        n_heads=4,
        d_ff=128,
        n_encoder_layers=2,
        n_decoder_layers=2,
        dropout=0.0,
        max_positions=64,
        positions=positions,
    )
    model = Transformer(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.add_(torch.randn_like(parameter) * (0.1 if name == "embedding.weight" else 1.0))
        eos = model.embedding.weight[EOS_ID]
        model.decoder_norm.bias.copy_(3.5 * eos / eos.norm())
    return model


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded sources `tag … </s>` of different lengths, and teacher-forced targets."""
    generator = torch.Generator().manual_seed(1)
    source = torch.randint(4, 300, (8, 9), generator=generator)
    source[:, -1] = EOS_ID
    for row, length in enumerate([9, 6, 9, 4, 9, 7, 9, 5]):
        source[row, length - 1] = EOS_ID
        source[row, length:] = PAD_ID
    target_in = torch.randint(4, 300, (8, 7), generator=generator)
    target_in[:, 0] = BOS_ID
    return source, target_in


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_exported_logits_match(positions: str) -> None:
    model = random_model(positions)
    hf = to_m2m100(model)
    source, target_in = batch()
    with torch.no_grad():
        ours = model.logits(model(source, target_in))
        theirs = hf(input_ids=source, attention_mask=(source != PAD_ID).long(), decoder_input_ids=target_in).logits
    real = (source != PAD_ID).any(dim=1)
    assert ours.shape == theirs.shape
    assert torch.allclose(ours[real], theirs[real], atol=1e-4, rtol=0), (ours - theirs).abs().max()


def test_exported_greedy_outputs_identical() -> None:
    model = random_model()
    hf = to_m2m100(model)
    source, _ = batch()
    limits = SearchLimits()
    caps = limits.per_sentence(source, model.config.max_positions).tolist()  # tokens incl. </s>
    ours = [h.tokens for h in greedy(model, source, limits)]
    generated = hf.generate(
        input_ids=source, attention_mask=(source != PAD_ID).long(), num_beams=1, do_sample=False, max_length=1 + max(caps)
    )
    theirs = []
    for row in generated[:, 1:].tolist():  # drop the decoder start token
        tokens = []
        for token in row:
            if token in (EOS_ID, PAD_ID):
                break
            tokens.append(token)
        theirs.append(tokens)
    assert {len(t) for t in ours} != {caps[0]}, "the test model should end some hypotheses early"
    for mine, hf_tokens, cap in zip(ours, theirs, caps):
        if len(mine) == cap:  # core cut it at its per-sentence length limit, HF runs on to the batch's
            assert hf_tokens[: len(mine)] == mine
        else:
            assert hf_tokens == mine


def test_export_command_writes_models_that_translate_like_core(tiny_translator, tiny_checkpoint, tmp_path) -> None:
    """`python -m core export`: the HF folder reloads to the same logits, CTranslate2 gives core's greedy output."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    from core.export import export_checkpoint, load_hf, vocabulary_of

    hf_folder = export_checkpoint(tiny_checkpoint, "hf", tmp_path / "hf")
    ct2_folder = export_checkpoint(tiny_checkpoint, "ctranslate2", tmp_path / "ct2")
    assert (hf_folder / "spm.model").exists() and (ct2_folder / "spm.model").exists()

    source = torch.tensor([tiny_translator.tokenizer.source_ids("The dog runs in the park.", "de")])
    target = torch.tensor([[BOS_ID, *tiny_translator.tokenizer.encode("Der Hund")]])
    with torch.no_grad():
        expected = tiny_translator.model.logits(tiny_translator.model(source, target))
        got = load_hf(hf_folder)(input_ids=source, attention_mask=source != PAD_ID, decoder_input_ids=target).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)

    vocabulary = vocabulary_of(tiny_translator.tokenizer)
    lines = ["The dog runs.", "Two old women buy apples in the city."]
    translator = ctranslate2.Translator(str(ct2_folder), device="cpu")
    for line, ours in zip(lines, tiny_translator.translate(lines, "en", "de")):
        ids = tiny_translator.tokenizer.source_ids(line, "de")
        limit = int(len(ids) * 1.5) + 10
        hypothesis = translator.translate_batch([[vocabulary[i] for i in ids]], beam_size=1, max_decoding_length=limit)[0].hypotheses[0]
        assert hypothesis[: len(ours.pieces)] == ours.pieces
        assert len(hypothesis) == len(ours.pieces) or len(ours.pieces) >= limit - 1  # core stops at its length limit
