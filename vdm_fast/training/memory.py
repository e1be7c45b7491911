"""Will the step fit? A conservative estimate of one training step's memory per device, checked
against what the device (or the host) has before anything is compiled."""

from __future__ import annotations

import functools
import os

from vdm_ref.configs import Config

from .errors import TrainError


def available_memory_bytes() -> int:
    """Memory the step may use: the accelerator's bytes_limit, or the host's MemAvailable."""
    import jax

    dev = jax.devices()[0]
    if dev.platform != "cpu":
        try:
            stats = dev.memory_stats() or {}
            if "bytes_limit" in stats:
                return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        except Exception:  # noqa: BLE001 - some backends do not report
            pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


@functools.cache
def remat_saves_memory() -> bool:
    """Whether this jax/XLA backend turns `jax.checkpoint` into less memory: XLA's memory plan
    (temporary bytes) for the gradient of a chain of 8 small layers, with and without
    rematerialising each (0.4 s, once per process). Measured on the 2-core CPU (2026-12-03): jax
    0.10.2's CPU backend plans the same bytes either way (a chain of 40 layers: 2,560 MiB both,
    and the same peak RSS), jax 0.12 half (1,312 MiB); a backend without a memory plan is taken
    at its word (True)."""
    import jax
    import jax.numpy as jnp

    def layer(w, x):
        return jnp.tanh(jnp.tanh(x @ w) + 0.5)

    def temp_bytes(f):
        def loss(ws, x):
            for w in ws:
                x = f(w, x)
            return jnp.sum(x * x)

        ws, x = [jnp.full((64, 64), 0.01, jnp.float32)] * 8, jnp.ones((256, 64), jnp.float32)
        analysis = jax.jit(jax.grad(loss)).lower(ws, x).compile().memory_analysis()
        return None if analysis is None else analysis.temp_size_in_bytes

    plain, remat = temp_bytes(layer), temp_bytes(jax.checkpoint(layer))
    return plain is None or remat is None or remat < 0.8 * plain


def estimate_memory_bytes(config: Config, *, per_device_batch: int, fsdp: int = 1, remat: bool = False) -> int:
    """A conservative estimate of one training step's memory on one device (float32).

    State: θ, EMA, Adam's m and v, the gradient and the update: 6 × params / fsdp. Activations
    kept for the backward pass: for every block, about 8 tensors of its output size (norms,
    activations, convolution outputs) plus, for attention blocks, the logits and the softmax
    [B·frames, heads, S, S] of spatial and [B·H·W, heads, T, T] of temporal attention — or, where
    those exceed `LOGITS_LIMIT_BYTES` and the memory-efficient path runs, a few chunks' worth. With
    rematerialisation only block inputs are kept (about a quarter) — where the backend honours it
    (`remat_saves_memory`; jax 0.10's CPU backend does not).
    """
    from vdm_ref.network import blocks, count_params

    u, tc = config.unet, config.train
    frames = u.frames + tc.image_frames
    b = per_device_batch
    state = 6 * count_params(u) * 4 // max(fsdp, 1)
    acts = 2 * b * frames * (u.image_size**2 * u.in_channels + u.resolutions[0] ** 2 * u.channels)  # input, conv_in
    for blk in blocks(u):
        r = u.resolutions[blk.level]
        pixels = b * frames * r * r
        acts += 8 * pixels * max(blk.in_channels, blk.out_channels)
        heads = blk.in_channels // u.head_dim
        if blk.kind == "spatial_attn":
            acts += _attention_logits(b * frames * heads, r * r, fused=True)
        elif blk.kind == "temporal_attn":
            acts += _attention_logits(b * r * r * heads, frames, fused=False)
    return state + 4 * acts // (4 if remat and remat_saves_memory() else 1)


def _attention_logits(rows: int, tokens: int, *, fused: bool) -> int:
    """Float32 elements an attention block keeps for the backward pass: logits and softmax of
    `rows` [tokens, tokens] maps (3 tensors' worth), or 3 chunks' worth when the memory-efficient
    path takes over (`vdm_fast.network.attention.LOGITS_LIMIT_BYTES`, or
    `FUSED_LOGITS_LIMIT_BYTES` for attention without bias or mask: `fused`)."""
    from vdm_fast.network import attention

    full = rows * tokens * tokens
    limit = attention.FUSED_LOGITS_LIMIT_BYTES if fused else attention.LOGITS_LIMIT_BYTES
    if 4 * full > limit:
        return 3 * attention.CHUNK_LOGITS_BYTES // 4
    return 3 * full


def check_memory(config: Config, *, per_device_batch: int, fsdp: int, available: int | None = None,
                 remat: bool = False) -> int:
    """Raise TrainError when the estimated step memory exceeds what is available; return the estimate."""
    need = estimate_memory_bytes(config, per_device_batch=per_device_batch, fsdp=fsdp, remat=remat)
    have = available_memory_bytes() if available is None else available
    if need > have:
        raise TrainError(
            f"a batch of {config.train.batch_size} ({per_device_batch} per device) of "
            f"{config.unet.frames}+{config.train.image_frames} frames at {config.unet.image_size}x"
            f"{config.unet.image_size} with preset {config.name!r} needs about {need / 2**30:.1f} GiB "
            f"per device, but {have / 2**30:.1f} GiB is available: lower --batch-size, --image-frames "
            "or the model size, shard over more devices (--fsdp), use --remat, or pass --skip-memory-check")
    return need
