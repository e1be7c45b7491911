"""The training memory estimate follows the attention path that will run: full logits below
`LOGITS_LIMIT_BYTES` (`FUSED_LOGITS_LIMIT_BYTES` for spatial attention), chunks above it (issue 14: the 16x64x64 step with attention at every level
once needed one 46.7 GB allocation)."""

from vdm_fast.network import attention
from vdm_fast.training.memory import estimate_memory_bytes
from vdm_ref.configs import Config, TrainConfig, UNetConfig


def _config(attn_resolutions):
    unet = UNetConfig(channels=64, channel_mult=(1, 2, 4, 8), num_res_blocks=2, attn_resolutions=attn_resolutions,
                      head_dim=32, emb_dim=256, emb_mlp_layers=2, dropout=0.0, frames=16, image_size=64,
                      in_channels=3, out_channels=3, target="eps", norm_groups=8)
    return Config("peer-B", "synthetic", unet, train=TrainConfig(batch_size=1, image_frames=0))


def test_attention_at_64x64_is_estimated_at_chunk_size_not_full_logits(monkeypatch):
    every_level = estimate_memory_bytes(_config((64, 32, 16, 8)), per_device_batch=1)
    paper = estimate_memory_bytes(_config((32, 16, 8)), per_device_batch=1)
    # One 64x64 spatial attention block's full logits: 16 frames x 2 heads x 4096² x 4 B = 2 GiB.
    # Chunked, the five 64x64 attention blocks together add less than one block's full logits
    # (their activations, not their logits, dominate).
    full_logits = 4 * 16 * 2 * 4096**2
    assert every_level - paper < full_logits
    for limit in ("LOGITS_LIMIT_BYTES", "FUSED_LOGITS_LIMIT_BYTES"):  # as if the plain path ran everywhere
        monkeypatch.setattr(attention, limit, 2**62)
    plain = estimate_memory_bytes(_config((64, 32, 16, 8)), per_device_batch=1)
    assert plain - every_level > 4 * full_logits


def test_remat_lowers_the_estimate():
    config = _config((32, 16, 8))
    assert estimate_memory_bytes(config, per_device_batch=1, remat=True) < estimate_memory_bytes(config, per_device_batch=1)
