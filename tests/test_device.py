"""core/device.py: device choice and the process-wide switches it brings."""

from __future__ import annotations

import torch

from core.device import pick_device


def test_cuda_turns_off_cudnn_attention() -> None:
    """cuDNN attention builds a kernel graph per tensor shape; bucketed batches change shape every
    step. Choosing CUDA turns it off; the CPU leaves it."""
    before = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        assert pick_device("cpu") == torch.device("cpu") and torch.backends.cuda.cudnn_sdp_enabled()
        assert pick_device("cuda:0") == torch.device("cuda:0")  # only chosen here; nothing runs on it
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)
