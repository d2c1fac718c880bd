r"""torch's CPU flash attention (aten/src/ATen/native/cpu/FlashAttentionKernel.cpp) for a low dtype,
forward and backward, in JAX: what :meth:`jaxinit.amp.Autocast.scaled_dot_product_attention` runs."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxinit._src.amp_round import round_low

FLASH_KV_SPLIT = 512  # torch's CPU flash attention: kvSplitSize


def _flash_forward(q, k, v, add, sc):
    """torch's CPU flash-attention forward (online softmax over key blocks of 512); returns the
    output (in ``v``'s dtype) and the float32 log-sum-exp torch saves for the backward."""
    f32, low = jnp.float32, v.dtype

    def block(start):
        stop = min(start + FLASH_KV_SPLIT, k.shape[-2])
        s = jnp.matmul(q, jnp.swapaxes(k[..., start:stop, :], -1, -2), preferred_element_type=f32) * f32(sc)
        return s + add[..., start:stop], v[..., start:stop, :]

    def step(s, vb, m_old):
        new_m = jnp.max(s, axis=-1, keepdims=True)
        if m_old is not None:
            new_m = jnp.maximum(m_old, new_m)
        safe_m = jnp.where(jnp.isneginf(new_m), 0.0, new_m)
        e = jnp.exp(s - safe_m)
        return new_m, safe_m, jnp.sum(e, axis=-1, keepdims=True), jnp.matmul(round_low(e, low), vb, preferred_element_type=f32)

    s0, v0 = block(0)
    m, _, ssum, o = step(s0, v0, None)
    for start in range(FLASH_KV_SPLIT, k.shape[-2], FLASH_KV_SPLIT):
        sb, vb = block(start)
        new_m, safe_m, esum, ev = step(sb, vb, m)
        corr = jnp.exp(m - safe_m)
        o, ssum, m = o * corr + ev, ssum * corr + esum, new_m
    return round_low(o / ssum, low), m + jnp.log(ssum)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def flash_attention(q, k, v, add, sc):
    return _flash_forward(q, k, v, add, sc)[0]


def _flash_attention_fwd(q, k, v, add, sc):
    o, lse = _flash_forward(q, k, v, add, sc)
    return o, (q, k, v, add, o, lse)


def _flash_attention_bwd(sc, res, do):
    """torch's CPU flash-attention backward: ``p = exp(s - lse)`` in float32, ``dv = p_low^T do``,
    ``dp = do v^T``, ``delta = rowsum(do * o)``, ``ds = p (dp - delta)`` rounded to the low dtype,
    ``dq = (ds k) * scale``, ``dk = (ds^T q) * scale``, float32 accumulation, one rounding each
    (bitwise torch 2.13's bf16 gradients on CPU for one key block)."""
    q, k, v, add, o, lse = res
    f32, low = jnp.float32, v.dtype
    s = jnp.matmul(q, jnp.swapaxes(k, -1, -2), preferred_element_type=f32) * f32(sc) + add
    p = jnp.exp(s - jnp.where(jnp.isneginf(lse), 0.0, lse))
    do = round_low(do, low)
    dv = jnp.matmul(jnp.swapaxes(round_low(p, low), -1, -2), do, preferred_element_type=f32)
    dp = jnp.matmul(do, jnp.swapaxes(v, -1, -2), preferred_element_type=f32)
    delta = jnp.sum(do.astype(f32) * o.astype(f32), axis=-1, keepdims=True)
    ds = round_low(p * (dp - delta), low)
    dq = jnp.matmul(ds, k, preferred_element_type=f32) * f32(sc)
    dk = jnp.matmul(jnp.swapaxes(ds, -1, -2), q, preferred_element_type=f32) * f32(sc)
    return round_low(dq, q.dtype), round_low(dk, k.dtype), round_low(dv, v.dtype), jnp.zeros_like(add)


flash_attention.defvjp(_flash_attention_fwd, _flash_attention_bwd)
