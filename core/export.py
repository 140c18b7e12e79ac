"""Export a `core` Transformer to Hugging Face `M2M100ForConditionalGeneration` and to CTranslate2.

Both exports compute the same function as the core model (up to float rounding), so decoding
speed can be compared on identical weights:

    python -m core export --checkpoint checkpoints/multi30k-4lang --format hf --out /tmp/m2m
    python -m core export --checkpoint checkpoints/multi30k-4lang --format ctranslate2 --out /tmp/ct2

`transformers` and `ctranslate2` are optional (requirements-bench.txt); they are imported only here.

Why M2M100: it is the `transformers` encoder-decoder with pre-LN layers, a final LayerNorm in
encoder and decoder, sinusoidal positions, embeddings scaled by sqrt(d_model), ReLU FFN, biases
on every attention projection and one embedding matrix shared by encoder, decoder and output
projection — exactly core's architecture. Two things differ and are fixed here:

- HF's position table is tensor2tensor style ([sin | cos] halves, frequencies 10000^(i/(d/2-1)))
  and is indexed from `padding_idx + 1` (padding_idx = 0 here, so the first token reads row 1).
  Core's table interleaves sin/cos and starts at row 0. The exporter writes core's table into
  rows 1..max_positions of HF's buffer. The buffer is *not persistent* (not saved in the
  weights file), so a model saved with `save_hf` must be reloaded with `load_hf`, which writes
  the table again from the saved `core_positions.safetensors`.
- Special ids: pad 0, bos 2 (decoder start), eos 3 (M2M100's defaults are 1, 0, 2, 2).

CTranslate2 gets a `TransformerSpec` built directly from core's weights (pre_norm=True, ReLU,
fused QKV for self-attention, fused KV for cross-attention, core's own position table, layer
norm epsilon 1e-5, shared vocabulary = the SentencePiece pieces).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from core.model import Transformer, sinusoidal_positions
from core.vocab import BOS_ID, EOS_ID, PAD_ID

LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, used by core, M2M100 and set for CT2


def core_position_table(model: Transformer) -> torch.Tensor:
    """[max_positions, d_model]: the sinusoids core adds (or its learned position embeddings)."""
    if model.config.positions == "learned":
        return model.positions.weight.detach().float().clone()
    return sinusoidal_positions(model.config.max_positions, model.config.d_model)


# --- Hugging Face ------------------------------------------------------------------------------


def m2m100_config(config, dropout: float = 0.0, attention_dropout: float = 0.0, activation_dropout: float = 0.0):
    """An `M2M100Config` with core's shape. Dropouts default to 0 (inference); for training pass
    core's values (core applies `dropout` after the FFN's ReLU too, i.e. activation_dropout)."""
    from transformers import M2M100Config

    return M2M100Config(
        vocab_size=config.vocab_size,
        d_model=config.d_model,
        encoder_layers=config.n_encoder_layers,
        decoder_layers=config.n_decoder_layers,
        encoder_attention_heads=config.n_heads,
        decoder_attention_heads=config.n_heads,
        encoder_ffn_dim=config.d_ff,
        decoder_ffn_dim=config.d_ff,
        max_position_embeddings=config.max_positions,
        activation_function="relu",
        dropout=dropout,
        attention_dropout=attention_dropout,
        activation_dropout=activation_dropout,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        scale_embedding=True,
        tie_word_embeddings=True,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
        forced_eos_token_id=None,
        use_cache=True,
    )


def set_hf_positions(hf_model, table: torch.Tensor) -> None:
    """Write core's position table into both HF position buffers at HF's offset (padding_idx + 1)."""
    for module in (hf_model.model.encoder.embed_positions, hf_model.model.decoder.embed_positions):
        weights = torch.zeros(table.shape[0] + module.offset, table.shape[1], dtype=module.weights.dtype)
        weights[PAD_ID + 1 : PAD_ID + 1 + table.shape[0]] = table
        module.weights = weights  # a plain (non-persistent) buffer, re-registered by nn.Module.__setattr__


def _copy_linear(target: torch.nn.Linear, source: torch.nn.Linear) -> None:
    target.weight.copy_(source.weight)
    target.bias.copy_(source.bias)


def _copy_norm(target: torch.nn.LayerNorm, source: torch.nn.LayerNorm) -> None:
    target.weight.copy_(source.weight)
    target.bias.copy_(source.bias)


def _copy_self_attention_and_feed_forward(hf_layer, layer) -> None:
    """The sub-layers encoder and decoder layers share (the decoder adds cross-attention)."""
    _copy_attention(hf_layer.self_attn, layer.self_attention)
    _copy_norm(hf_layer.self_attn_layer_norm, layer.self_attention_norm)
    _copy_linear(hf_layer.fc1, layer.feed_forward.linear1)
    _copy_linear(hf_layer.fc2, layer.feed_forward.linear2)
    _copy_norm(hf_layer.final_layer_norm, layer.feed_forward_norm)


def _copy_attention(target, source) -> None:
    _copy_linear(target.q_proj, source.query)
    _copy_linear(target.k_proj, source.key)
    _copy_linear(target.v_proj, source.value)
    _copy_linear(target.out_proj, source.output)


@torch.no_grad()
def to_m2m100(model: Transformer, dropout: float = 0.0, attention_dropout: float = 0.0, activation_dropout: float = 0.0):
    """An `M2M100ForConditionalGeneration` computing the same function as `model` (float32, eval mode
    unless dropouts are given for training). Weights are copied, not shared."""
    from transformers import GenerationConfig, M2M100ForConditionalGeneration

    cfg = model.config
    hf = M2M100ForConditionalGeneration(m2m100_config(cfg, dropout, attention_dropout, activation_dropout))
    hf.model.shared.weight.copy_(model.embedding.weight)
    for embedding in (hf.model.encoder.embed_tokens, hf.model.decoder.embed_tokens, hf.lm_head):
        if embedding.weight.data_ptr() != hf.model.shared.weight.data_ptr():  # tied in transformers 5: a no-op
            embedding.weight.copy_(model.embedding.weight)
    set_hf_positions(hf, core_position_table(model))

    for hf_layer, layer in zip(hf.model.encoder.layers, model.encoder_layers, strict=True):
        _copy_self_attention_and_feed_forward(hf_layer, layer)
    _copy_norm(hf.model.encoder.layer_norm, model.encoder_norm)

    for hf_layer, layer in zip(hf.model.decoder.layers, model.decoder_layers, strict=True):
        _copy_self_attention_and_feed_forward(hf_layer, layer)
        _copy_attention(hf_layer.encoder_attn, layer.cross_attention)
        _copy_norm(hf_layer.encoder_attn_layer_norm, layer.cross_attention_norm)
    _copy_norm(hf.model.decoder.layer_norm, model.decoder_norm)

    hf.generation_config = GenerationConfig(
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
        num_beams=1,
        do_sample=False,
        length_penalty=1.0,
        early_stopping=False,
        max_length=cfg.max_positions,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
    )
    hf.train(dropout > 0 or attention_dropout > 0 or activation_dropout > 0)
    return hf


def save_hf(hf_model, folder: str | Path, model: Transformer | None = None) -> Path:
    """`save_pretrained` plus the position table (HF does not save its sinusoidal buffer)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    hf_model.save_pretrained(folder)
    table = hf_model.model.encoder.embed_positions.weights[PAD_ID + 1 : PAD_ID + 1 + hf_model.config.max_position_embeddings]
    save_file({"positions": table.contiguous()}, str(folder / "core_positions.safetensors"))
    return folder


def load_hf(folder: str | Path):
    """Reload a model written by `save_hf`, restoring core's position table."""
    from safetensors.torch import load_file
    from transformers import M2M100ForConditionalGeneration

    folder = Path(folder)
    hf = M2M100ForConditionalGeneration.from_pretrained(folder)
    set_hf_positions(hf, load_file(str(folder / "core_positions.safetensors"))["positions"])
    return hf.eval()


# --- CTranslate2 -------------------------------------------------------------------------------


def _np(t: torch.Tensor):
    return t.detach().float().cpu().numpy().copy()


def ctranslate2_spec(model: Transformer, vocabulary: list[str]):
    """A `ctranslate2.specs.TransformerSpec` holding core's weights."""
    import numpy as np
    from ctranslate2.specs import common_spec, transformer_spec

    cfg = model.config
    if len(vocabulary) != cfg.vocab_size:
        raise ValueError(f"vocabulary has {len(vocabulary)} pieces, the model {cfg.vocab_size}")
    spec = transformer_spec.TransformerSpec.from_config(
        (cfg.n_encoder_layers, cfg.n_decoder_layers),
        cfg.n_heads,
        pre_norm=True,
        activation=common_spec.Activation.RELU,
    )
    spec.config.layer_norm_epsilon = LAYER_NORM_EPS
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = (vocabulary[1], vocabulary[BOS_ID], vocabulary[EOS_ID])
    spec.config.decoder_start_token = vocabulary[BOS_ID]
    spec.config.add_source_bos = spec.config.add_source_eos = False  # callers pass `<2xx> … </s>` themselves

    embedding = _np(model.embedding.weight)
    positions = _np(core_position_table(model))

    def linear(target, *sources: torch.nn.Linear) -> None:
        target.weight = np.concatenate([_np(s.weight) for s in sources], axis=0)
        target.bias = np.concatenate([_np(s.bias) for s in sources], axis=0)

    def norm(target, source: torch.nn.LayerNorm) -> None:
        target.gamma, target.beta = _np(source.weight), _np(source.bias)

    def ffn(target, layer) -> None:
        norm(target.layer_norm, layer.feed_forward_norm)
        linear(target.linear_0, layer.feed_forward.linear1)
        linear(target.linear_1, layer.feed_forward.linear2)

    encoder = spec.encoder
    encoder.embeddings[0].weight = embedding
    encoder.scale_embeddings = True  # × sqrt(d_model)
    encoder.position_encodings.encodings = positions
    norm(encoder.layer_norm, model.encoder_norm)
    for layer_spec, layer in zip(encoder.layer, model.encoder_layers, strict=True):
        attention = layer.self_attention
        linear(layer_spec.self_attention.linear[0], attention.query, attention.key, attention.value)
        linear(layer_spec.self_attention.linear[1], attention.output)
        norm(layer_spec.self_attention.layer_norm, layer.self_attention_norm)
        ffn(layer_spec.ffn, layer)

    decoder = spec.decoder
    decoder.embeddings.weight = embedding
    decoder.scale_embeddings = True
    decoder.position_encodings.encodings = positions
    norm(decoder.layer_norm, model.decoder_norm)
    decoder.projection.weight = embedding  # tied output projection, no bias
    for layer_spec, layer in zip(decoder.layer, model.decoder_layers, strict=True):
        attention, cross = layer.self_attention, layer.cross_attention
        linear(layer_spec.self_attention.linear[0], attention.query, attention.key, attention.value)
        linear(layer_spec.self_attention.linear[1], attention.output)
        norm(layer_spec.self_attention.layer_norm, layer.self_attention_norm)
        linear(layer_spec.attention.linear[0], cross.query)
        linear(layer_spec.attention.linear[1], cross.key, cross.value)
        linear(layer_spec.attention.linear[2], cross.output)
        norm(layer_spec.attention.layer_norm, layer.cross_attention_norm)
        ffn(layer_spec.ffn, layer)

    spec.register_source_vocabulary(vocabulary)
    spec.register_target_vocabulary(vocabulary)
    return spec


def to_ctranslate2(
    model: Transformer, vocabulary: list[str], output_dir: str | Path, quantization: str | None = None, force: bool = True
) -> Path:
    """Write a CTranslate2 model folder. `quantization` is applied to the saved weights
    (None keeps float32; a float32 folder can still be loaded with compute_type="int8")."""
    from ctranslate2.converters.converter import Converter

    class _CoreConverter(Converter):
        def _load(self):
            return ctranslate2_spec(model, vocabulary)

    return Path(_CoreConverter().convert(str(output_dir), quantization=quantization, force=force))


def vocabulary_of(tokenizer) -> list[str]:
    """The SentencePiece pieces in id order: CT2's source and target vocabulary."""
    return [tokenizer.processor.id_to_piece(i) for i in range(len(tokenizer))]


def export_checkpoint(checkpoint: str | Path, kind: str, out: str | Path, quantization: str | None = None) -> Path:
    """Write a checkpoint as a Transformers M2M100 folder ("hf") or a CTranslate2 model ("ctranslate2"),
    with the SentencePiece model beside the weights."""
    import core

    translator = core.load(checkpoint, device="cpu")
    if kind == "hf":
        folder = save_hf(to_m2m100(translator.model), out)
    elif kind == "ctranslate2":
        folder = to_ctranslate2(translator.model, vocabulary_of(translator.tokenizer), out, quantization)
    else:
        raise ValueError(f"Unknown export format {kind!r}: use hf or ctranslate2")
    shutil.copyfile(Path(checkpoint) / "spm.model", Path(folder) / "spm.model")
    return Path(folder)
