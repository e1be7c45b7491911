"""Rematerialisation the compiler cannot undo: a block's forward pass recomputed inside its backward.

    call = remat(_call_block)          # same values and gradients as _call_block
    h = call(block, h, ctx, key)

`jax.checkpoint` marks what to recompute and relies on XLA to keep the recomputation in the
backward pass. jax 0.10's CPU pipeline does not: it removes the optimisation barriers and, with
its default scheduler, runs the recomputation early, keeping as much memory as without it
(docs/benchmarks.md, "Rematerialisation"). Here the backward of `fn` is a custom VJP that keeps
only `fn`'s array inputs and recomputes `fn` under `jax.vjp` from inputs made to depend on the
incoming cotangent (each input plus 0 · its first element), so no compiler can run the
recomputation before that cotangent exists, nor merge it with the forward pass. (A `lax.cond` on
the cotangent does the same, but XLA's CPU backend runs a convolution's gradient inside a
conditional or loop body ~100x slower: 3.5 s against 35 ms for 80x16x16x64 -> 64 channels.)

A NaN or infinite cotangent makes NaN gradients (as the plain backward does), so a non-finite
step is still seen as one.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["remat"]


def _differentiable(x) -> bool:
    return eqx.is_array(x) and jnp.issubdtype(x.dtype, jnp.inexact)


def remat(fn):
    """`fn(*args)` with its forward pass recomputed in the backward pass (module docstring).

    Gradients flow to the floating-point arrays of `args` (parameters of Equinox modules
    included); other arrays (PRNG keys, masks) and non-array leaves are held fixed.
    """

    def call(*args):
        diff, rest = eqx.partition(args, _differentiable)
        fixed, static = eqx.partition(rest, eqx.is_array)

        def apply(diff, fixed):
            return fn(*eqx.combine(diff, fixed, static))

        @jax.custom_vjp
        def run(diff, fixed):
            return apply(diff, fixed)

        def forward(diff, fixed):
            return apply(diff, fixed), (diff, fixed)

        def backward(saved, cotangent):
            diff, fixed = saved
            # 0 · (the cotangent's first element), added to every input: no value changes (a NaN
            # or infinite cotangent makes NaN gradients), but the recomputation now waits for
            # the cotangent, and compilers keep x · 0 for floats (it is NaN for x = NaN or ±inf).
            zero = jax.tree_util.tree_leaves(cotangent)[0].reshape(-1)[0] * 0
            tied = jax.tree.map(lambda a: a + zero.astype(a.dtype), diff)
            grads = jax.vjp(lambda d: apply(d, fixed), tied)[1](cotangent)[0]
            return grads, jax.tree.map(lambda _: None, fixed)

        run.defvjp(forward, backward)
        return run(diff, fixed)

    return call
