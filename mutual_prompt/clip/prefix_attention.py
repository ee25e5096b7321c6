"""CLIP transformer blocks, batch-first; in the text transformer, on sequences that continue a cached prefix.

The text transformer is causal: a token's hidden state depends only on the tokens before it. A
sequence written as ``[prefix ; suffix]`` can therefore be computed in two parts: the prefix alone
(its keys and values at every layer are final), then any number of suffixes that attend to those
cached keys/values followed by their own tokens. With no prefix the functions here are ordinary
causal self-attention blocks, and with no mask at all the full self-attention blocks of the image
transformer. They are computed from the weights of CLIP's own ``ResidualAttentionBlock`` (``ln_1``,
``attn`` = ``nn.MultiheadAttention``, ``ln_2``, ``mlp`` = ``c_fc``, ``gelu``, ``c_proj``) with
``scaled_dot_product_attention`` and ``F.linear``, on batch-first tensors ``[N, L, width]``.
The LayerNorms are CLIP's own modules (float32 inside, the input's dtype out), so in OpenAI's
mixed fp16 / bf16 layout the blocks compute in the dtype of the weights, as CLIP's own blocks do.

Attention is PyTorch's fused kernel except in bfloat16 on the CPU (:func:`attention`): there the
fused kernel's backward runs about 9x slower than in float32 on the text transformer's shapes (a few
queries per sequence over hundreds of sequences) and 2x on the image transformer's, which kept
PREC bf16 training from running faster than fp32. Written out as two matrix products with the
scores and the softmax in float32, as the fused kernel accumulates them, it runs on the CPU's bf16
units in both directions.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KeyValue = Tuple[Tensor, Tensor]
"""One layer's keys and values, each ``[N, heads, length, head_width]``."""


def check_block(block: nn.Module) -> None:
    """Raise if ``block`` is not a CLIP residual block that the functions here reproduce exactly."""
    mlp = getattr(block, "mlp", None)
    if not all(hasattr(mlp, name) for name in ("c_fc", "gelu", "c_proj")):
        raise TypeError(f"expected CLIP's ResidualAttentionBlock with mlp = (c_fc, gelu, c_proj), got {block!r}")
    attn = getattr(block, "attn", None)
    if not isinstance(attn, nn.MultiheadAttention):
        raise TypeError(f"expected the block's attn to be nn.MultiheadAttention, got {type(attn).__name__}")
    if not attn._qkv_same_embed_dim or attn.in_proj_weight is None:
        raise ValueError("MultiheadAttention with separate kdim/vdim is not supported (CLIP uses one in_proj)")
    if attn.bias_k is not None or attn.bias_v is not None or attn.add_zero_attn:
        raise ValueError("MultiheadAttention with bias_k/bias_v/add_zero_attn is not supported")
    if attn.dropout != 0.0:
        raise ValueError(f"MultiheadAttention dropout must be 0 (CLIP's is), got {attn.dropout}")


def causal_mask(prefix_length: int, length: int, device: torch.device) -> Tensor:
    """Boolean mask ``[length, prefix_length + length]``, True where a suffix token may attend.

    Every suffix token sees the whole prefix, itself and the suffix tokens before it.
    """
    return torch.ones(length, prefix_length + length, dtype=torch.bool, device=device).tril(prefix_length)


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    n, length, width = x.shape
    return x.reshape(n, length, num_heads, width // num_heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    n, heads, length, head_width = x.shape
    return x.transpose(1, 2).reshape(n, length, heads * head_width)


def _in_projection(attn: nn.MultiheadAttention, x: Tensor, weight_rows: slice) -> Tensor:
    bias = None if attn.in_proj_bias is None else attn.in_proj_bias[weight_rows]
    return F.linear(x, attn.in_proj_weight[weight_rows], bias)


def _mlp(mlp: nn.Module, x: Tensor) -> Tensor:
    return F.linear(mlp.gelu(F.linear(x, mlp.c_fc.weight, mlp.c_fc.bias)), mlp.c_proj.weight, mlp.c_proj.bias)


def _attend(attn: nn.MultiheadAttention, q: Tensor, k: Tensor, v: Tensor, prefix: Optional[KeyValue],
            prefix_index: Optional[Tensor], mask: Optional[Tensor]) -> Tensor:
    if prefix is not None:
        # index_select, not prefix[0][prefix_index]: its backward (index_add) is 10-20x faster on the CPU.
        prefix_k, prefix_v = prefix if prefix_index is None else (t.index_select(0, prefix_index) for t in prefix)
        k = torch.cat([prefix_k, k], dim=2)
        v = torch.cat([prefix_v, v], dim=2)
    out = attention(q, k, v, mask)
    return F.linear(_merge_heads(out), attn.out_proj.weight, attn.out_proj.bias)


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor]) -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` over ``[N, heads, length, d]``; ``mask`` (boolean, True where a
    query may attend) as ``scaled_dot_product_attention``'s. See the module docstring for the kernels."""
    if q.device.type != "cpu" or q.dtype != torch.bfloat16:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with torch.autocast("cpu", enabled=False):  # under PREC amp, keep the scores out of autocast's bf16
        scores = (q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=-1).to(v.dtype) @ v


def _block_with_key_value(block: nn.Module, x: Tensor, mask: Optional[Tensor], prefix: Optional[KeyValue],
                          prefix_index: Optional[Tensor]) -> Tuple[Tensor, KeyValue]:
    attn = block.attn
    width = x.shape[-1]
    qkv = _in_projection(attn, block.ln_1(x), slice(0, 3 * width))
    q, k, v = (_split_heads(t, attn.num_heads) for t in qkv.chunk(3, dim=-1))
    x = x + _attend(attn, q, k, v, prefix, prefix_index, mask)
    x = x + _mlp(block.mlp, block.ln_2(x))
    return x, (k, v)


def block_step(block: nn.Module, x: Tensor, mask: Optional[Tensor], prefix: Optional[KeyValue] = None,
               prefix_index: Optional[Tensor] = None) -> Tensor:
    """One residual block on ``x`` ``[N, L, width]`` whose tokens attend to a cached prefix (if
    given) and then causally to themselves; ``mask`` comes from :func:`causal_mask`, or is None for
    full (non-causal) self-attention.

    Sequence ``i`` continues prefix ``prefix_index[i]`` (default ``i``). Selecting the prefix here,
    not before the call, keeps only the small per-prefix cache alive under activation checkpointing.
    """
    return _block_with_key_value(block, x, mask, prefix, prefix_index)[0]


def block_step_at(block: nn.Module, x: Tensor, positions: Tensor, mask: Tensor, prefix: Optional[KeyValue] = None,
                  prefix_index: Optional[Tensor] = None) -> Tensor:
    """The block's output at one position per sequence, ``x[i, positions[i]]``, as ``[N, width]``.

    Keys and values need every position; the query, the output projection and the MLP only the
    requested position. Used for the last block, where only the end-of-text token is read.
    """
    attn = block.attn
    width = x.shape[-1]
    sequence = torch.arange(x.shape[0], device=x.device)
    h = block.ln_1(x)
    k, v = (_split_heads(t, attn.num_heads) for t in _in_projection(attn, h, slice(width, 3 * width)).chunk(2, dim=-1))
    q = _split_heads(_in_projection(attn, h[sequence, positions].unsqueeze(1), slice(0, width)), attn.num_heads)
    position_mask = mask[positions].unsqueeze(1).unsqueeze(1)
    out = x[sequence, positions].unsqueeze(1) + _attend(attn, q, k, v, prefix, prefix_index, position_mask)
    out = out + _mlp(block.mlp, block.ln_2(out))
    return out.squeeze(1)


def prefix_key_values(blocks: Sequence[nn.Module], x: Tensor) -> List[KeyValue]:
    """Run the prefix ``x`` ``[B, P, width]`` through ``blocks`` (causal self-attention) and return
    each block's keys and values, which is all that later suffix tokens need from it."""
    mask = causal_mask(0, x.shape[1], x.device)
    key_values = []
    for block in blocks:
        x, key_value = _block_with_key_value(block, x, mask, None, None)
        key_values.append(key_value)
    return key_values
