"""Which device to run on, and the process-wide switches that choice brings with it.

Kept out of the model: a `Transformer` runs wherever its parameters are; training, loading and
the benchmarks pick the device here.
"""

from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """ "auto" takes a CUDA GPU, else Apple's MPS, else the CPU; any other name is used as given."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        # On Hopper GPUs PyTorch sends masked bf16/fp16 attention to cuDNN, which builds a new
        # kernel graph (slow to build) for every new tensor shape. Length-bucketed batches change
        # shape at every step, so bf16 training crawled (bench/archive/gpu/README.md). The flash
        # and memory-efficient kernels need no such build. This switch is process-wide.
        torch.backends.cuda.enable_cudnn_sdp(False)
    return device
