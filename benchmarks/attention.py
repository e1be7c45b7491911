"""Time one attention, forward and forward + backward, by each XLA path.

docs/benchmarks.md, "The attention backward":

    python -m benchmarks.attention --shape 16 2 4096 32                  # the memory-efficient path
    python -m benchmarks.attention --shape 16 2 4096 32 --path plain     # one chunk (the logits, once)
    python -m benchmarks.attention --shape 16 2 4096 32 --path checkpointed   # AD through the loops

--shape is N heads tokens head_dim (heads-major q, k, v [N, heads, S, d], float32, no bias or
mask). Paths: `fused` the chunked forward with `attention_backward`'s custom VJP (what the
blocks run above `FUSED_LOGITS_LIMIT_BYTES`); `checkpointed` the same chunks differentiated
through their `jax.checkpoint`ed loops (what a bias or mask gets); `plain` one chunk.
`--backward-keys` / `--tile-mib` set the backward tile (`BACKWARD_KEY_CHUNK`, the tile bytes).
Prints the median of `--repeats` calls of each, after one warm-up, forward and forward +
backward interleaved.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", nargs=4, type=int, default=[16, 2, 4096, 32], metavar=("N", "HEADS", "S", "D"),
                   help="q, k, v [N, heads, S, d] (default: shape B's 64x64 attention)")
    p.add_argument("--path", choices=["fused", "checkpointed", "plain"], default="fused",
                   help="fused: the chunks with the custom-VJP backward; checkpointed: automatic "
                        "differentiation through the checkpointed chunks; plain: one chunk (default: %(default)s)")
    p.add_argument("--backward-keys", type=int, default=None, help="BACKWARD_KEY_CHUNK (default: the package's)")
    p.add_argument("--tile-mib", type=float, default=None, help="CHUNK_LOGITS_BYTES in MiB (default: the package's)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    import vdm_fast.network.attention as fa
    import vdm_fast.network.attention_backward as fab

    saved = fab.BACKWARD_KEY_CHUNK, fa.CHUNK_LOGITS_BYTES
    try:
        if args.backward_keys:
            fab.BACKWARD_KEY_CHUNK = args.backward_keys
        if args.tile_mib:
            fa.CHUNK_LOGITS_BYTES = int(args.tile_mib * 2**20)
        print(json.dumps(_measure(fa, fab, *args.shape, args.path, args.repeats)))
    finally:  # module constants read at trace time: leave them as they were
        fab.BACKWARD_KEY_CHUNK, fa.CHUNK_LOGITS_BYTES = saved


def _measure(fa, fab, n, heads, s, d, path, repeats) -> dict:
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    q, k, v, w = (jnp.asarray(rng.standard_normal((n, heads, s, d)), jnp.float32) for _ in range(4))
    if path == "plain":
        attend = lambda q, k, v: fa._chunked_heads_major(q, k, v, query_chunk=s, key_chunk=s)  # noqa: E731
    elif path == "checkpointed":
        def attend(q, k, v):
            cq, ck = fa.chunk_sizes(n, heads, s, s)
            q = q * jnp.asarray(1.0 / np.sqrt(d), q.dtype)
            return fa._chunk_loop(q, (k, v, None, None, None, None), cq, ck, checkpoint=True)[0]
    else:
        attend = fa._chunked_heads_major
    forward = jax.jit(attend)
    both = jax.jit(jax.value_and_grad(lambda q, k, v: jnp.sum(w * attend(q, k, v)), argnums=(0, 1, 2)))
    jax.block_until_ready((forward(q, k, v), both(q, k, v)))
    times = {"forward": [], "forward+backward": []}
    for _ in range(repeats):
        for name, fn in (("forward", forward), ("forward+backward", both)):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(q, k, v))
            times[name].append(time.perf_counter() - t0)
    flops = 4 * n * heads * s * s * d  # q kᵀ and p v
    med = {name: float(np.median(t)) for name, t in times.items()}
    return {"shape": [n, heads, s, d], "path": path, "chunks": fa.chunk_sizes(n, heads, s, s),
            "backward_tile": fab.backward_chunk_sizes(n, heads, s, s, fa.CHUNK_LOGITS_BYTES),
            "seconds": med, "backward_over_forward": med["forward+backward"] / med["forward"] - 1,
            "counted_gflop_per_s": {"forward": flops / med["forward"] / 1e9,
                                    "forward+backward": 3 * flops / med["forward+backward"] / 1e9}}


if __name__ == "__main__":
    main()
