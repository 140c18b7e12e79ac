"""core/fast.py: each speed path computes what the readable code computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core import fast
from core.model import attention, subsequent_mask
from core.quantize import int8_copy


def test_dropout_drops_at_rate_p_keeps_the_mean_and_is_seeded() -> None:
    dropout = fast.Dropout(0.1).train()
    x = torch.ones(500, 1001, requires_grad=True)  # an odd size: the mask is cut from 64-bit draws
    torch.manual_seed(3)
    y = dropout(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.003
    assert abs(y.mean().item() - 1.0) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    # every quarter of a 64-bit draw is used, and each is uniform
    for part in range(4):
        assert abs(kept.view(-1)[part:-1:4].float().mean().item() - 0.9) < 0.005
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)
    torch.manual_seed(3)
    assert torch.equal(dropout(x), y)
    assert dropout.eval()(x) is x


def test_dropout_is_the_identity_in_eval_mode_and_at_zero() -> None:
    x = torch.randn(3, 4)
    assert fast.Dropout(0.5).eval()(x) is x
    assert fast.Dropout(0.0).train()(x) is x


@torch.no_grad()
def test_project_is_each_linear_layer_applied_alone() -> None:
    torch.manual_seed(0)
    layers = [nn.Linear(8, 8) for _ in range(3)]
    x = torch.randn(2, 5, 8)
    for got, layer in zip(fast.project(x, layers), layers, strict=True):
        torch.testing.assert_close(got, layer(x))
    # packed input [N, 8] comes back padded, zeros at the padding
    real = torch.tensor([[True] * 5, [True, True, False, False, False]])
    packed = fast.RealTokens.of(real)
    for got, layer in zip(fast.project(packed.pack(x), layers, packed), layers, strict=True):
        torch.testing.assert_close(got[real], layer(x)[real])
        assert float(got[~real].abs().max()) == 0.0


def test_real_tokens_pack_then_pad_restores_the_real_positions() -> None:
    real = torch.tensor([[True, True, False], [True, False, False]])
    packed = fast.RealTokens.of(real)
    x = torch.arange(18, dtype=torch.float32).view(2, 3, 3)
    assert packed.pack(x).shape == (3, 3)
    torch.testing.assert_close(packed.pad(packed.pack(x)), x * real[..., None])


def test_fused_attention_equals_the_reference() -> None:
    torch.manual_seed(0)
    query, key, value = torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8)
    mask = torch.tensor([True] * 4 + [False] * 2)[None, None, None, :]
    torch.testing.assert_close(fast.attention(query, key, value, mask, False, 0.0), attention(query, key, value, mask)[0])
    causal = fast.attention(query, key, value, None, True, 0.0)
    torch.testing.assert_close(causal, attention(query, key, value, subsequent_mask(6, 6))[0])
    many = torch.randn(2, 4, fast.FEW_QUERIES + 1, 8)
    assert fast.fused_attention_pays(many) and not fast.fused_attention_pays(query[:, :, :1])
    assert not fast.fused_attention_pays(query[:, :, :4])  # a sentence's beams, grouped


def test_grouped_beams_attend_to_their_shared_source_as_each_beam_alone() -> None:
    """`group_beams`: 2 sentences × 3 beams, the source keys/values kept once per sentence, give
    what each beam's row gets from its own copy of them; `ungroup_beams` puts the weights back."""
    torch.manual_seed(0)
    queries = torch.randn(6, 4, 1, 8)
    keys, values = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, None, :]
    context, weights = attention(fast.group_beams(queries, 3), keys, values, mask)
    tiled = torch.arange(2).repeat_interleave(3)
    alone, alone_weights = attention(queries, keys[tiled], values[tiled], mask[tiled])
    merged = context.transpose(1, 2).reshape(6, 1, 4, 8).transpose(1, 2)  # [sentence, beam] -> row
    torch.testing.assert_close(merged, alone)
    torch.testing.assert_close(fast.ungroup_beams(weights, 3), alone_weights)
    assert fast.group_beams(queries, 1) is queries and fast.ungroup_beams(None, 3) is None


def test_joined_weights_are_kept_while_no_gradient_is_recorded_and_follow_updates() -> None:
    torch.manual_seed(0)
    layers = [nn.Linear(8, 8) for _ in range(3)]
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        first, _ = fast._joined(layers)
        assert fast._joined(layers)[0] is first  # not copied again
        layers[1].weight.mul_(2.0)  # an in-place update (an optimizer step) joins them afresh
        for got, layer in zip(fast.project(x, layers), layers, strict=True):
            torch.testing.assert_close(got, layer(x))
    assert fast._joined(layers[:1])[0] is layers[0].weight  # one layer: nothing to join
    out = fast.project(x, layers)  # with gradients: joined in the graph
    sum(o.sum() for o in out).backward()
    assert all(layer.weight.grad is not None for layer in layers)


def test_dense_is_the_plain_linear_map() -> None:
    torch.manual_seed(0)
    weight = torch.randn(50, 16) * 0.1
    hidden = torch.randn(3, 1, 16)
    expected = hidden @ weight.t()
    with torch.inference_mode():
        torch.testing.assert_close(fast.dense(hidden, weight), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast.dense(hidden[:, 0], weight), expected[:, 0], rtol=1e-5, atol=1e-5)
        weight.mul_(2.0)  # a changed weight is packed again
        torch.testing.assert_close(fast.dense(hidden, weight), 2 * expected, rtol=1e-5, atol=1e-5)
    trained = weight.clone().requires_grad_()
    assert torch.equal(fast.dense(hidden, trained), hidden @ trained.t())  # training: the plain matmul


def test_linear_applies_each_kind_of_layer_as_itself() -> None:
    torch.manual_seed(0)
    layer, x = nn.Linear(16, 8), torch.randn(5, 3, 16)
    with torch.inference_mode():
        torch.testing.assert_close(fast.linear(layer, x), layer(x), rtol=1e-5, atol=1e-5)
        seen = []
        hook = layer.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
        fast.linear(layer, x)  # a watched layer runs as itself, so its hooks see it
        hook.remove()
        assert seen == [torch.Size([5, 3, 8])]
        int8 = int8_copy(nn.Sequential(layer))[0]  # not an nn.Linear any more
        assert torch.equal(fast.linear(int8, x), int8(x))


def test_linear_relu_is_relu_of_the_layer() -> None:
    torch.manual_seed(0)
    layer, x = nn.Linear(16, 8), torch.randn(5, 3, 16)
    expected = torch.relu(layer(x))
    assert float((expected == 0).float().mean()) > 0.2  # the ReLU has something to cut
    torch.testing.assert_close(fast.linear_relu(layer, x), expected)  # training: the plain ops, with gradients
    with torch.inference_mode():
        torch.testing.assert_close(fast.linear_relu(layer, x), expected, rtol=1e-5, atol=1e-5)
        seen = []
        hook = layer.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
        fast.linear_relu(layer, x)  # a watched layer runs as itself, so its hooks see it
        hook.remove()
        assert seen == [torch.Size([5, 3, 8])]
        int8 = int8_copy(nn.Sequential(layer))[0]
        assert torch.equal(fast.linear_relu(int8, x), torch.relu(int8(x)))


def test_real_tokens_if_padded_packs_only_batches_with_much_padding() -> None:
    mostly_padding = torch.tensor([[True, True, False, False], [True, False, False, False]])
    assert fast.RealTokens.if_padded(mostly_padding).index.tolist() == [0, 1, 4]
    all_real = torch.ones(4, 10, dtype=torch.bool)
    assert fast.RealTokens.if_padded(all_real) is None
    all_real[0, -1] = False  # one position in forty: not worth packing
    assert fast.RealTokens.if_padded(all_real) is None


@pytest.mark.parametrize("vocab", [8000, 1000, 96, 17])
def test_argmax_is_torchs_first_index_of_the_maximum(vocab: int) -> None:
    torch.manual_seed(vocab)
    x = torch.randn(37, vocab)
    x[3] = 0.0  # all equal: the first index
    x[5, vocab // 2 :] = x[5].max() + 1  # a tie across blocks
    x[7, 1] = float("nan")  # NaN counts as the largest, as in torch
    assert torch.equal(fast.argmax(x), x.argmax(dim=-1))


@pytest.mark.parametrize("vocab", [8000, 1000, 96, 17])
@pytest.mark.parametrize(("groups", "beams", "k"), [(64, 4, 8), (3, 1, 8), (5, 2, 4), (2, 1, 24)])  # 1000: 20 blocks < 24
def test_top_candidates_are_torchs_topk_of_the_path_scores(vocab: int, groups: int, beams: int, k: int) -> None:
    if k > beams * vocab:
        pytest.skip("more candidates than pieces")
    torch.manual_seed(vocab + groups)
    log_probs, scores = torch.randn(groups * beams, vocab).log_softmax(dim=-1), torch.randn(groups, beams)
    values, indices = fast.top_candidates(scores, log_probs, k)
    expected = (scores.view(-1, 1) + log_probs).view(groups, beams * vocab).topk(k, dim=1)
    assert torch.equal(values, expected.values) and torch.equal(indices, expected.indices)


def test_append_writes_the_reordered_past_then_the_new_positions() -> None:
    torch.manual_seed(0)
    past, new = torch.randn(6, 2, 5, 4), torch.randn(3, 2, 1, 4)
    order = torch.tensor([4, 4, 0])
    assert torch.equal(fast.append(past, new, order), torch.cat([past.index_select(0, order), new], dim=2))
    assert torch.equal(fast.append(past[:3], new, None), torch.cat([past[:3], new], dim=2))


ONE_LARGE_BLOCK = """
import ctypes, sys, torch
from core import fast
class MallocInfo(ctypes.Structure):  # glibc's struct mallinfo2 (malloc.h)
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallocInfo
if sys.argv[1] == "reuse":
    assert fast.reuse_freed_memory()
before = libc.mallinfo2()
block = torch.empty(int(sys.argv[2]), dtype=torch.uint8)
during = libc.mallinfo2()
del block
after = libc.mallinfo2()
print(during.hblkhd - before.hblkhd, after.fordblks - before.fordblks)
"""


def _has_mallinfo2() -> bool:
    import ctypes
    import platform

    return platform.libc_ver()[0] == "glibc" and hasattr(ctypes.CDLL(None), "mallinfo2")


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc's counters (mallinfo2, glibc 2.33 and later)")
@pytest.mark.parametrize("mode", ["default", "reuse"])
def test_reused_memory_keeps_large_blocks_on_the_heap(mode: str) -> None:
    """By default glibc gives a large block pages of its own from the OS and returns them when it
    is freed, so the next step's block is faulted in and zeroed again. With
    `fast.reuse_freed_memory` the block comes from the heap and stays there once freed, for the
    next allocation. Read from glibc's own counters (mallinfo2), in fresh processes: counting page
    faults instead depends on the kernel (huge pages) and varies from process to process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    block = 40 * 2**20  # above the 32 MB ceiling of glibc's own threshold
    command = [sys.executable, "-c", ONE_LARGE_BLOCK, mode, str(block)]
    glibc_defaults = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    root = Path(__file__).parent.parent
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=root, env=glibc_defaults)
    own_pages, kept_free = map(int, done.stdout.split())
    # The freed block may merge with free memory next to it: compare halves.
    if mode == "default":
        assert own_pages >= block and kept_free < block // 2, (own_pages, kept_free)
    else:
        assert own_pages == 0 and kept_free > block // 2, (own_pages, kept_free)
