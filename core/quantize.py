"""Int8 copies of a trained model, made after the fact, outside the model's code.

Dynamic quantization (`torch.ao.quantization.quantize_dynamic`) swaps each `nn.Linear` for one
that stores its weights as int8 and quantizes its input on the fly, so nothing is calibrated and
the model's classes stay as they are. CPU only. Smaller and often faster, at a small cost in BLEU;
bench/decode_speed.py measures both (bench/results.md).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def int8_copy(model: nn.Module) -> nn.Module:
    """A CPU copy of `model` whose linear layers hold int8 weights; `model` is left as it is."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its future move to torchao
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).cpu(), {nn.Linear}, dtype=torch.qint8)
