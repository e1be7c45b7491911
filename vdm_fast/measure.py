"""Measurements shared by the training log, `training.throughput` and `benchmarks`: the float32
matmul peak that achieved FLOP/s are compared against, measured in the same process."""

from __future__ import annotations

import time


def matmul_peak_flops(n: int = 1024, repeats: int = 10, dtype: str = "float32") -> float:
    """Best FLOP/s of an n x n @ n x n matmul (2 n³ FLOPs) in `dtype` over `repeats` timed runs."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(dtype))
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best
