"""Will the step fit? A conservative estimate of one training step's memory per device, checked
against what the device (or the host) has before anything is compiled."""

from __future__ import annotations

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


def estimate_memory_bytes(config: Config, *, per_device_batch: int, fsdp: int = 1, remat: bool = False) -> int:
    """A conservative estimate of one training step's memory on one device (float32).

    State: θ, EMA, Adam's m and v, the gradient and the update: 6 × params / fsdp. Activations
    kept for the backward pass: for every block, about 8 tensors of its output size (norms,
    activations, convolution outputs) plus, for attention blocks, the logits and the softmax
    [B·frames, heads, S, S] of spatial and [B·H·W, heads, T, T] of temporal attention — or, where
    those exceed `LOGITS_LIMIT_BYTES` and the memory-efficient path runs, a few chunks' worth. With
    rematerialisation (`vdm_fast.network.remat`) only block inputs are kept (about a quarter).
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
    return state + 4 * acts // (4 if remat else 1)


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
