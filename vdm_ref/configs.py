"""Configurations and named presets: the hyperparameters of Appendix A, backend-free.

Three frozen dataclasses hold one experiment:

- `UNetConfig` — the 3D U-Net of Sec. 3 / Fig. 1 (channels, multipliers M1..MK, blocks per
  resolution N, attention resolutions, head dimension, conditioning embedding, ...).
- `DiffusionConfig` — the noise schedule and the samplers (log-SNR range, sampling steps, γ,
  Langevin corrector, guidance weights).
- `TrainConfig` — the optimiser and training loop (Adam β1/β2, learning rate, batch, EMA,
  weight decay, steps, joint-training image frames, flips).

`Config` bundles them under a name; `get_preset(name)` returns one of `PRESETS`: every
configuration of Appendix A (`ucf101`, `bair`, `kinetics600`, `t2v-small`, `t2v-large`,
`t2v-large-fs4`, `t2v-sr-9x128`) plus small presets that train on a 2-core CPU (`tiny`,
`mnist-small`, `mnist-small-text`). Every config validates itself on construction (also after
`dataclasses.replace`) and raises `ValueError` naming the bad value and what was expected.

Both backends import this module (DESIGN.md, Layering): it has no array code.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

__mirror__ = False

TARGETS = ("eps", "v")
CONDITIONINGS = ("none", "class", "text")


def _tuple_of_ints(obj, field_name):
    """Coerce a list/tuple field to a tuple of ints (so configs built from a CLI stay hashable)."""
    value = getattr(obj, field_name)
    if isinstance(value, int):
        value = (value,)
    try:
        value = tuple(int(v) for v in value)
    except TypeError:
        raise ValueError(f"{field_name}={value!r}: expected a sequence of ints") from None
    object.__setattr__(obj, field_name, value)
    return value


def _positive(name, value):
    if not value > 0:
        raise ValueError(f"{name}={value!r}: expected a positive value")


@dataclass(frozen=True)
class UNetConfig:
    """The factorised space-time 3D U-Net (Sec. 3, Fig. 1, Appendix A).

    The network has K = len(channel_mult) levels. Level i works at spatial resolution
    `image_size // (patch_size * 2**i)` with `channels * channel_mult[i]` channels; between
    consecutive levels the resolution halves (downsampling pass) or doubles (upsampling pass), as
    in the image U-Net the paper extends (so 64x64 with M = 1,2,4,8 has levels 64, 32, 16, 8, matching the
    attention resolutions 8, 16, 32 of Appendix A).

    **Fields** (Appendix A name in brackets):

    - `channels` [base channels], `channel_mult` [channel multipliers M1..MK],
      `num_res_blocks` [blocks per resolution N], `attn_resolutions` [attention resolutions],
      `head_dim` [attention head dimension], `emb_dim` [conditioning embedding dimension],
      `emb_mlp_layers` [conditioning embedding MLP layers], `dropout` [dropout].
    - `frames`, `image_size`, `frameskip` [video resolution F x S x S, frameskip]: the shape
      the model is trained on; it runs on other frame counts (relative position bias) and on
      other sizes divisible by 2**(K-1).
    - `in_channels`, `out_channels`: 3 for RGB video, 1 for Moving MNIST.
    - `target` [prediction target]: 'eps' or 'v'.
    - `conditioning`: 'none', 'class' (a one-hot [B, num_classes]) or 'text' (token
      embeddings [B, L, text_dim] pooled by attention, Sec. 4.3). The paper embeds captions
      with BERT-large (1024); this project's text encoder is MiniLM, hence `text_dim=384`.
    - `max_relative_distance`: frame offsets beyond ±this share one learned temporal bias.
    - `temporal_position`: the temporal attention's relative position encoding, 'bias' (a
      learned scalar per head and clipped offset, T5-style) or 'shaw' (Sec. 3's relative
      position embeddings [45], Shaw et al. 2018: learned head_dim vectors per clipped offset
      added to keys and values).
    - `norm_groups`: GroupNorm groups.
    - `patch_size` p: space-to-depth before the first convolution, each p x p pixel patch
      becoming one position with p²·in_channels channels (and back after the last one), so
      the top level runs at image_size / p. 1 (the paper's network) turns it off; 2 makes a
      small model ~4x cheaper on a CPU. Not in the paper.
    """

    channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 4, 8)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (8, 16, 32)
    head_dim: int = 64
    emb_dim: int = 1024
    emb_mlp_layers: int = 4
    dropout: float = 0.0
    frames: int = 16
    image_size: int = 64
    in_channels: int = 3
    out_channels: int = 3
    frameskip: int = 1
    target: str = "eps"
    conditioning: str = "none"
    num_classes: int = 0
    text_dim: int = 384
    max_relative_distance: int = 32
    temporal_position: str = "bias"
    norm_groups: int = 32
    patch_size: int = 1

    def __post_init__(self):
        mult = _tuple_of_ints(self, "channel_mult")
        attn = _tuple_of_ints(self, "attn_resolutions")
        for name in ("channels", "num_res_blocks", "head_dim", "emb_dim", "emb_mlp_layers",
                     "frames", "image_size", "in_channels", "out_channels", "frameskip",
                     "text_dim", "max_relative_distance", "norm_groups", "patch_size"):
            _positive(name, getattr(self, name))
        if not mult or any(m <= 0 for m in mult):
            raise ValueError(f"channel_mult={mult!r}: expected a non-empty tuple of positive ints")
        if self.out_channels != self.in_channels:
            raise ValueError(f"in_channels={self.in_channels}, out_channels={self.out_channels}: expected "
                             "equal values (the network predicts ε or v, which has the video's channels)")
        if self.channels % 2:
            raise ValueError(f"channels={self.channels}: expected an even number (the sinusoidal "
                             "log-SNR embedding has channels/2 frequencies)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r}: expected a rate in [0, 1)")
        if self.target not in TARGETS:
            raise ValueError(f"target={self.target!r}: expected one of {TARGETS}")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning={self.conditioning!r}: expected one of {CONDITIONINGS}")
        if self.temporal_position not in ("bias", "shaw"):
            raise ValueError(f"temporal_position={self.temporal_position!r}: expected 'bias' or 'shaw'")
        if self.conditioning == "class" and self.num_classes <= 0:
            raise ValueError(f"num_classes={self.num_classes}: class conditioning needs num_classes > 0")
        if self.conditioning == "text" and self.emb_dim % self.head_dim:
            raise ValueError(f"emb_dim={self.emb_dim}: text attention pooling needs emb_dim divisible "
                             f"by head_dim={self.head_dim}")
        factor = self.size_multiple
        if self.image_size % factor:
            raise ValueError(f"image_size={self.image_size}: expected a multiple of "
                             f"patch_size*2**(K-1)={factor} for patch_size={self.patch_size} and "
                             f"K={len(mult)} levels (channel_mult={mult})")
        resolutions = self.resolutions
        for r in attn:
            if r not in resolutions:
                raise ValueError(f"attn_resolutions contains {r}: expected resolutions of the levels "
                                 f"{resolutions} (image_size={self.image_size}, K={len(mult)})")
        for i, m in enumerate(mult):
            c = self.channels * m
            if c % self.norm_groups:
                raise ValueError(f"channels*channel_mult[{i}]={c}: expected a multiple of "
                                 f"norm_groups={self.norm_groups}")
            if (self.has_attention(i) or i == len(mult) - 1) and c % self.head_dim:
                raise ValueError(f"channels*channel_mult[{i}]={c} at an attention level: expected a "
                                 f"multiple of head_dim={self.head_dim}")

    @property
    def num_levels(self) -> int:
        """K, the number of resolution levels (= len(channel_mult))."""
        return len(self.channel_mult)

    @property
    def size_multiple(self) -> int:
        """Spatial sizes the network takes are multiples of this: patch_size * 2**(K-1)."""
        return self.patch_size * 2 ** (self.num_levels - 1)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The spatial resolution of each level: image_size / (patch_size * 2**i)."""
        return tuple(self.image_size // (self.patch_size * 2**i) for i in range(self.num_levels))

    def level_channels(self, level: int) -> int:
        """Channels at a level: channels * M_{level+1}."""
        return self.channels * self.channel_mult[level]

    def has_attention(self, level: int) -> bool:
        """Whether a level carries spatial (and so temporal) attention blocks."""
        return self.resolutions[level] in self.attn_resolutions


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule and sampling hyperparameters (Sec. 2, 3.1, Appendix A).

    - `logsnr_min`, `logsnr_max` [noise schedule log SNR range]; `schedule` ('cosine');
      `logsnr_shift`: s of the shifted cosine schedule λ(t) + s (not in the paper; 0 is the
      paper's schedule; `schedule.logsnr_schedule_cosine`), used in training and sampling.
    - `sampling_steps` [sampling timesteps]; `gamma` [sampling log-variance interpolation γ,
      Eq. 4]; `langevin_corrector` [+N Langevin cor.] with step size `langevin_delta` (δ, Eq. 5).
    - `recon_guidance_weight` [reconstruction guidance weight w_r, Eq. 7-8]; 0 reduces
      reconstruction guidance to the replacement method. Appendix A states it for BAIR (50)
      and Kinetics (9) only.
    - `guidance_weight`: classifier-free guidance w (Eq. 6) used by default at sampling; not
      in Appendix A (Table 5 sweeps 1, 2, 5).
    - `context_frames`: frames given when sampling conditionally (video prediction: BAIR
      1 -> 15, Kinetics-600 5 -> 11, Sec. 4.2); 0 for unconditional sampling.
    """

    logsnr_min: float = -20.0
    logsnr_max: float = 20.0
    schedule: str = "cosine"
    logsnr_shift: float = 0.0
    sampling_steps: int = 256
    gamma: float = 0.1
    langevin_corrector: bool = False
    langevin_delta: float = 0.1
    recon_guidance_weight: float = 0.0
    guidance_weight: float = 0.0
    context_frames: int = 0

    def __post_init__(self):
        if not self.logsnr_min < self.logsnr_max:
            raise ValueError(f"logsnr range [{self.logsnr_min}, {self.logsnr_max}]: expected "
                             "logsnr_min < logsnr_max")
        if not math.isfinite(self.logsnr_shift):
            raise ValueError(f"logsnr_shift={self.logsnr_shift!r}: expected a finite number")
        if self.schedule != "cosine":
            raise ValueError(f"schedule={self.schedule!r}: expected 'cosine'")
        _positive("sampling_steps", self.sampling_steps)
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma={self.gamma!r}: expected a value in [0, 1]")
        _positive("langevin_delta", self.langevin_delta)
        if self.recon_guidance_weight < 0 or self.guidance_weight < 0 or self.context_frames < 0:
            raise ValueError(f"recon_guidance_weight={self.recon_guidance_weight}, guidance_weight="
                             f"{self.guidance_weight}, context_frames={self.context_frames}: "
                             "expected values >= 0")


#: Learning-rate decays after the warm-up (`vdm_ref.train.learning_rate_at`).
LR_DECAYS = ("none", "cosine")
#: Weightings of Eq. 2 over log-SNR (`vdm_ref.losses.loss_weight_fn`).
LOSS_WEIGHTS = ("none", "min_snr")


def check_recipe(warmup_steps, grad_clip, adam_eps) -> None:
    """Raise ValueError unless warmup_steps >= 0, grad_clip >= 0 and adam_eps > 0 (the training
    recipe beyond Appendix A; `TrainConfig` and `vdm_ref.train.Recipe` both hold it)."""
    if warmup_steps < 0 or grad_clip < 0 or not adam_eps > 0:
        raise ValueError(f"warmup_steps={warmup_steps}, grad_clip={grad_clip}, adam_eps={adam_eps}: "
                         "expected warmup_steps >= 0, grad_clip >= 0, adam_eps > 0")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters (Appendix A; the loss is Eq. 2 with the network's target).

    - `optimizer` ('adam'), `beta1`, `beta2`, `learning_rate`, `batch_size`, `ema_decay`,
      `weight_decay`, `train_steps` as in Appendix A (weight decay is decoupled, AdamW-style).
    - `image_frames` [joint training independent images per video], appended after the video
      frames and marked in the frame mask (Sec. 3, 4.3.1).
    - `flip` [data augmentation: left-right flips].
    - `cond_dropout`: probability of replacing c by the null condition 0 during training, for
      classifier-free guidance (Eq. 6); not stated in the paper.
    - `hardware`: what Appendix A trained on (documentation only).
    - Not in Appendix A (the recipe of `vdm_ref.train.Recipe`, kept here so a preset carries
      it): `warmup_steps` of linear learning-rate warm-up, `grad_clip` (global L2 norm, 0:
      off), `adam_eps`, `ema_warmup` (decay min(d, (1+n)/(10+n)) at update n), `lr_decay`
      ('none', or 'cosine': η · ½(1 + cos πp) over the run's progress p, `vdm_ref.train`),
      `loss_weight` ('none', or 'min_snr': Eq. 2 with w(λ) = min(SNR, `min_snr_gamma`),
      `vdm_ref.losses.min_snr_weight`).
    """

    optimizer: str = "adam"
    beta1: float = 0.9
    beta2: float = 0.99
    learning_rate: float = 3e-4
    batch_size: int = 128
    ema_decay: float = 0.9999
    weight_decay: float = 0.0
    train_steps: int = 200_000
    image_frames: int = 8
    flip: bool = False
    cond_dropout: float = 0.1
    hardware: str = ""
    warmup_steps: int = 200
    grad_clip: float = 1.0
    adam_eps: float = 1e-8
    ema_warmup: bool = True
    lr_decay: str = "none"
    loss_weight: str = "none"
    min_snr_gamma: float = 5.0

    def __post_init__(self):
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay={self.lr_decay!r}: expected one of {LR_DECAYS}")
        if self.loss_weight not in LOSS_WEIGHTS:
            raise ValueError(f"loss_weight={self.loss_weight!r}: expected one of {LOSS_WEIGHTS}")
        _positive("min_snr_gamma", self.min_snr_gamma)
        if self.optimizer != "adam":
            raise ValueError(f"optimizer={self.optimizer!r}: expected 'adam'")
        for name in ("beta1", "beta2", "ema_decay", "cond_dropout"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name}={v!r}: expected a value in [0, 1)")
        for name in ("learning_rate", "batch_size", "train_steps"):
            _positive(name, getattr(self, name))
        if self.weight_decay < 0 or self.image_frames < 0:
            raise ValueError(f"weight_decay={self.weight_decay}, image_frames={self.image_frames}: "
                             "expected values >= 0")
        check_recipe(self.warmup_steps, self.grad_clip, self.adam_eps)


@dataclass(frozen=True)
class Config:
    """One named experiment: network, diffusion/sampling and training hyperparameters."""

    name: str
    dataset: str
    unet: UNetConfig
    diffusion: DiffusionConfig = DiffusionConfig()
    train: TrainConfig = TrainConfig()
    notes: str = ""



def config_to_dict(config: Config) -> dict:
    """A `Config` as a JSON-able nested dict (what checkpoints and run directories store)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(d: dict | str) -> Config:
    """Inverse of `config_to_dict`; also takes a preset name.

    Missing `diffusion` / `train` sections take their defaults (older checkpoints); anything else
    that does not fit raises ValueError naming it.
    """
    if isinstance(d, str):
        return get_preset(d)
    if not isinstance(d, dict) or not isinstance(d.get("unet"), dict):
        raise ValueError(f"a config dict needs a 'unet' section, got {type(d).__name__} "
                         f"with keys {sorted(d) if isinstance(d, dict) else []}")
    try:
        return Config(d.get("name", "checkpoint"), d.get("dataset", ""), UNetConfig(**d["unet"]),
                      DiffusionConfig(**d.get("diffusion", {})), TrainConfig(**d.get("train", {})),
                      d.get("notes", ""))
    except TypeError as e:  # an unknown or missing field
        raise ValueError(f"cannot read the config: {e}") from None

_UCF101 = Config(
    "ucf101", "ucf101",
    unet=UNetConfig(channels=256, channel_mult=(1, 2, 4, 8), num_res_blocks=2,
                    emb_mlp_layers=4, dropout=0.1, target="eps"),
    diffusion=DiffusionConfig(sampling_steps=256, gamma=0.1),
    train=TrainConfig(beta2=0.99, learning_rate=3e-4, batch_size=128, ema_decay=0.9999,
                      train_steps=60_000, image_frames=8, hardware="128 TPU-v4 chips"),
    notes="Appendix A.1; unconditional 16x64x64 UCF101 (Table 1).",
)

_BAIR = Config(
    "bair", "bair",
    unet=UNetConfig(channels=128, channel_mult=(1, 2, 3, 4), num_res_blocks=3,
                    emb_mlp_layers=2, dropout=0.1, target="v"),
    diffusion=DiffusionConfig(sampling_steps=256, gamma=0.0, langevin_corrector=True,
                              recon_guidance_weight=50.0, context_frames=1),
    train=TrainConfig(beta2=0.999, learning_rate=2e-4, batch_size=128, ema_decay=0.999,
                      weight_decay=0.01, train_steps=660_000, image_frames=8, flip=True,
                      hardware="128 TPU-v4 chips"),
    notes="Appendix A.2; video prediction 1 -> 15 frames via reconstruction guidance "
          "(Sec. 4.2, Table 2).",
)

_KINETICS = Config(
    "kinetics600", "kinetics600",
    unet=UNetConfig(channels=256, channel_mult=(1, 2, 4, 8), num_res_blocks=2,
                    emb_mlp_layers=2, dropout=0.1, target="v"),
    diffusion=DiffusionConfig(sampling_steps=128, gamma=0.0, langevin_corrector=True,
                              recon_guidance_weight=9.0, context_frames=5),
    train=TrainConfig(beta2=0.99, learning_rate=2e-4, batch_size=256, ema_decay=0.9999,
                      train_steps=220_000, image_frames=8, hardware="256 TPU-v4 chips"),
    notes="Appendix A.3; video prediction 5 -> 11 frames via reconstruction guidance "
          "(Sec. 4.2, Table 3).",
)

_T2V_SMALL = Config(
    "t2v-small", "text-video",
    unet=UNetConfig(channels=128, channel_mult=(1, 2, 4, 8), num_res_blocks=2,
                    emb_mlp_layers=4, dropout=0.0, target="eps", conditioning="text"),
    diffusion=DiffusionConfig(sampling_steps=256, gamma=0.3),
    train=TrainConfig(beta2=0.99, learning_rate=3e-4, batch_size=128, ema_decay=0.9999,
                      train_steps=200_000, image_frames=8, hardware="64 TPU-v4 chips"),
    notes="Appendix A.4 small 16x64x64 model (joint-training ablation, Table 4, which sweeps "
          "0, 4, 8 image frames; 8 here).",
)

_T2V_LARGE = Config(
    "t2v-large", "text-video",
    unet=UNetConfig(channels=256, channel_mult=(1, 2, 4, 8), num_res_blocks=2,
                    emb_mlp_layers=4, dropout=0.0, target="eps", conditioning="text",
                    frameskip=1),
    diffusion=DiffusionConfig(sampling_steps=256, gamma=0.3),
    train=TrainConfig(beta2=0.99, learning_rate=3e-4, batch_size=128, ema_decay=0.9999,
                      train_steps=700_000, image_frames=8, hardware="128 TPU-v4 chips"),
    notes="Appendix A.4 large 16x64x64 model, frameskip 1 (Tables 5-6).",
)

_T2V_LARGE_FS4 = dataclasses.replace(
    _T2V_LARGE, name="t2v-large-fs4",
    unet=dataclasses.replace(_T2V_LARGE.unet, frameskip=4),
    notes="Appendix A.4 large 16x64x64 model trained at frameskip 4 (Table 5; the first "
          "stage of the Fig. 2 cascade).")

_T2V_SR = Config(
    "t2v-sr-9x128", "text-video",
    unet=UNetConfig(channels=128, channel_mult=(1, 2, 4, 8, 16), num_res_blocks=2,
                    head_dim=128, emb_mlp_layers=4, dropout=0.0, target="eps",
                    conditioning="text", frames=9, image_size=128),
    diffusion=DiffusionConfig(sampling_steps=256, gamma=0.3),
    train=TrainConfig(beta2=0.99, learning_rate=2e-4, batch_size=128, ema_decay=0.9999,
                      train_steps=800_000, image_frames=7, hardware="128 TPU-v4 chips"),
    notes="Appendix A.4 large 9x128x128 model (second stage of the Fig. 2 cascade: spatial + "
          "temporal super-resolution by reconstruction guidance).",
)

_TINY = Config(
    "tiny", "synthetic", UNetConfig(
        channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), head_dim=4,
        emb_dim=16, emb_mlp_layers=2, dropout=0.0, frames=16, image_size=8, in_channels=3,
        out_channels=3, max_relative_distance=8, norm_groups=2),
    DiffusionConfig(sampling_steps=16, gamma=0.1),
    TrainConfig(learning_rate=1e-3, batch_size=4, ema_decay=0.99, train_steps=100, image_frames=2),
    notes="Test-sized network (a few thousand parameters); not from the paper.",
)

_MNIST_SMALL = Config(
    "mnist-small", "moving_mnist", UNetConfig(
        channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8, 4),
        head_dim=16, emb_dim=128, emb_mlp_layers=2, dropout=0.0, frames=8, image_size=32,
        in_channels=1, out_channels=1, max_relative_distance=16, norm_groups=8, patch_size=2),
    DiffusionConfig(sampling_steps=128, gamma=0.1, langevin_corrector=True),
    TrainConfig(learning_rate=1e-3, batch_size=8, ema_decay=0.999, train_steps=20_000,
                image_frames=2, warmup_steps=100, hardware="2-core CPU", loss_weight="min_snr",
                lr_decay="cosine"),
    notes="Small unconditional Moving MNIST model (8x32x32, 2x2 space-to-depth) that trains on a "
          "2-core CPU; not from the paper. Min-SNR-5 loss weighting, cosine learning-rate decay "
          "and predictor-corrector sampling: measured best at 20 minutes (docs/training.md).",
)

_MNIST_SMALL_TEXT = dataclasses.replace(
    _MNIST_SMALL, name="mnist-small-text",
    unet=dataclasses.replace(_MNIST_SMALL.unet, conditioning="text"),
    notes="mnist-small conditioned on caption embeddings (MiniLM, 384-d) by attention pooling.")

PRESETS: dict[str, Config] = {c.name: c for c in (
    _UCF101, _BAIR, _KINETICS, _T2V_SMALL, _T2V_LARGE, _T2V_LARGE_FS4, _T2V_SR,
    _TINY, _MNIST_SMALL, _MNIST_SMALL_TEXT)}

#: The presets that reproduce Appendix A, in the paper's order.
APPENDIX_A = ("ucf101", "bair", "kinetics600", "t2v-small", "t2v-large", "t2v-large-fs4",
              "t2v-sr-9x128")


def get_preset(name: str) -> Config:
    """The named preset. Raises ValueError naming the valid presets for an unknown name."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}: expected one of {sorted(PRESETS)}") from None
