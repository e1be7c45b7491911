"""Where a U-Net evaluation's time goes: each block compiled and timed alone on its real input,
summed by kind (embedding, conv in/out, res, spatial_attn, temporal_attn, down, up).

Every block is called the way the U-Net calls it, `block(h, ctx, key=None)` with ctx a
`vdm_fast.network.BlockContext` (the embedding; frame mask None). A block's FLOPs are XLA's cost
analysis of its compiled program (so the kinds' FLOPs sum to about XLA's count for the whole
network, `xla_gflop_per_eval`; zero padding is not counted, unlike `vdm_ref.network.flops`).
"""

from __future__ import annotations

from .measure import compiled_call, median, timed, xla_flops


def profile_blocks(model, z, logsnr, repeats: int) -> dict[str, dict]:
    """Time each block of `model` (a `vdm_fast.network.UNet`) alone, unconditional, at z's shape.

    **Returns:** {kind: {"s": seconds (sum over the kind's blocks, each the median of
    max(3, repeats) runs), "gflop": XLA-counted GFLOPs (sum)}}, in the network's order.
    """
    import jax
    import jax.numpy as jnp

    from vdm_fast.network import BlockContext
    from vdm_ref.network.layers import space_to_depth

    rows: dict[str, dict] = {}

    def alone(kind, fn, *args):
        run, compiled, _ = compiled_call(fn, *args)
        result = jax.block_until_ready(run())
        row = rows.setdefault(kind, {"s": 0.0, "gflop": 0.0})
        row["s"] += median([timed(run)[0] for _ in range(max(3, repeats))])
        row["gflop"] += (xla_flops(compiled) or 0.0) / 1e9
        return result

    patch = model.config.patch_size
    emb = alone("embedding", lambda m, l: m.emb(l, None), model, logsnr)
    h = alone("conv in/out", lambda c, x: c(space_to_depth(x, patch)), model.conv_in, z)
    ctx = BlockContext(emb.astype(h.dtype))
    skips = [h]
    for spec, block in zip(model.specs, model.blocks):
        if spec.concat_skip:
            h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = alone(spec.kind, lambda b, x, c: b(x, c, key=None), block, h, ctx)
        if spec.save_skip:
            skips.append(h)
    alone("conv in/out", lambda m, x: m.out_conv(jax.nn.silu(m.out_norm(x))), model, h)
    return rows

