"""A trained network as a denoiser x̂_θ(z_t, λ_t, c), for either backend.

    model = load_model("checkpoints/mnist-small")          # checkpoint: shared params + config
    model = model_from_params(config, params, backend="ref")
    x_hat = model.denoiser(z, logsnr, cond)                 # a pytree-callable (eqx.Module)

`Model.denoiser` converts the network's ε̂ or v̂ to x̂ (`vdm_ref.parameterization`), so the
samplers of both backends take it as their `denoise_fn`. With backend 'fast' the network is the
Equinox U-Net (`vdm_fast.network.from_params`); with 'ref' it is `vdm_ref.network.apply` on
jax.numpy, the parameters held as the module's (traced) fields. Either way the weights are
pytree leaves, so a compiled sampler loop takes them as arguments, not as constants.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vdm_ref import configs as C

from vdm_fast.backend import BACKENDS, Denoiser, RefNetwork, network  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Model:
    """A network ready to sample: its `Config`, its parameters and the denoiser built on them.

    - `config`: the `vdm_ref.configs.Config` it was trained with (frames, resolution, channels,
      conditioning, target; sampling defaults in `config.diffusion`).
    - `denoiser`: `Denoiser` (x̂_θ(z, λ, c)); `backend`: 'fast' or 'ref'.
    - `meta`: the checkpoint's metadata (empty when built from parameters), e.g. the dataset it
      was trained on.
    """

    config: C.Config
    denoiser: Denoiser
    backend: str = "fast"
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def unet(self) -> C.UNetConfig:
        return self.config.unet

    @property
    def frames(self) -> int:
        """F, the number of frames the model was trained on (one block)."""
        return self.unet.frames

    @property
    def image_size(self) -> int:
        return self.unet.image_size

    @property
    def channels(self) -> int:
        return self.unet.in_channels

    @property
    def compiled_sampler(self) -> bool:
        """Whether whole sampling loops compile (`vdm_fast.samplers`): the 'fast' backend; the
        'ref' backend runs vdm_ref's Python loops around the network (`engine.sample_window`)."""
        return self.backend == "fast"

    @property
    def size_multiple(self) -> int:
        """Spatial sizes the network takes are multiples of this: patch_size · 2**(K − 1)."""
        return self.unet.size_multiple

    def check_video(self, video, what: str = "video", *, frames: int | None = None) -> None:
        """Raise ValueError if `video` [B, T, H, W, C] is not something this model can condition on."""
        shape = tuple(np.shape(video))
        if len(shape) != 5:
            raise ValueError(f"{what} has shape {shape}: expected [B, T, H, W, C] (5 axes)")
        _, t, h, w, c = shape
        if c != self.channels:
            raise ValueError(f"{what} has {c} channels: the model takes {self.channels}")
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(f"{what} is {h}x{w}: the model was trained on {self.image_size}x{self.image_size} "
                             "frames (resize the video to that size)")
        if frames is not None and t < frames:
            raise ValueError(f"{what} has {t} frames: at least {frames} are needed")


def model_from_params(config: C.Config, params: dict, *, backend: str = "fast", meta: dict | None = None,
                      compute_dtype=None) -> Model:
    """A `Model` from a config and parameters in the shared layout (NumPy or JAX arrays).

    backend 'fast': the Equinox U-Net (optionally computing in `compute_dtype`, e.g. bfloat16);
    'ref': `vdm_ref.network.apply` on jax.numpy float32.
    """
    net = network(config.unet, params, backend=backend, compute_dtype=compute_dtype)
    return Model(config, Denoiser(net, config.unet.target), backend, dict(meta or {}))


# ---------------------------------------------------------------------------------------------
# Checkpoints


def load_model(path: str | Path, *, backend: str = "fast", ema: bool = True, compute_dtype=None) -> Model:
    """The model of a checkpoint (a checkpoint directory or a run directory: its newest one).

    Uses the EMA parameters when the checkpoint has them and `ema` is True. Raises
    FileNotFoundError naming the path when there is no checkpoint there, ValueError
    (`CheckpointError`) naming the file when it cannot be read (truncated, bit-flipped) or does
    not match its config.
    """
    from vdm_ref.network import param_shapes
    from vdm_ref.support.checkpoint import CheckpointError, check_shapes, latest_checkpoint, load_checkpoint

    p = Path(path)
    ckpt = p if (p / "meta.json").is_file() else latest_checkpoint(p) if p.is_dir() else None
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint at {p}: expected a checkpoint directory (meta.json, "
                                "arrays.npz) or a training run directory with checkpoints/step_*")
    try:
        arrays, meta = load_checkpoint(ckpt)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:  # a damaged arrays.npz
        raise CheckpointError(f"cannot read checkpoint {ckpt / 'arrays.npz'}: {type(e).__name__}: {e}") from e
    if "config" not in meta:
        raise ValueError(f"checkpoint {ckpt} has no config in its meta.json: cannot build the network")
    config = C.config_from_dict(meta["config"])
    params = arrays.get("ema") if ema and "ema" in arrays else arrays.get("params")
    if params is None:
        raise ValueError(f"checkpoint {ckpt} holds no parameters (expected 'params' or 'ema' arrays), "
                         f"found {sorted(arrays)}")
    try:
        check_shapes(params, param_shapes(config.unet), f"the parameters of {ckpt}")
    except CheckpointError as e:
        raise ValueError(str(e)) from e
    meta = dict(meta, checkpoint=str(p))
    return model_from_params(config, params, backend=backend, meta=meta, compute_dtype=compute_dtype)


def open_model(path: str, *, backend: str = "fast", ema: bool = True, flag: str = "--checkpoint") -> Model:
    """`load_model` of a command's checkpoint flag: the path as given or relative to the
    repository root (`vdm_fast.inputs.resolve_checkpoint`); any failure to read it (missing,
    truncated, bit-flipped, mismatched) is an `InputError` naming the flag and the file."""
    from vdm_fast.inputs import InputError, resolve_checkpoint

    p = resolve_checkpoint(path, flag)
    try:
        return load_model(p, backend=backend, ema=ema)
    except (FileNotFoundError, ValueError) as e:  # CheckpointError is a ValueError
        raise InputError(f"{flag} {path}: {e}" if str(p) in str(e) else f"{flag} {path}: cannot read {p}: "
                         f"{type(e).__name__}: {e}") from e


def describe(model: Model) -> str:
    """One line naming the model: preset, frames × size × channels, target, conditioning, step."""
    u = model.unet
    step = model.meta.get("step")
    where = f", step {step}" if step is not None else ""
    return (f"{model.config.name}: {u.frames}x{u.image_size}x{u.image_size}x{u.in_channels}, "
            f"{u.target}-prediction, conditioning {u.conditioning}{where} ({model.backend} backend)")


def dumps_config(config: C.Config) -> str:
    """The config as JSON (the form `config_from_dict` reads)."""
    return json.dumps(dataclasses.asdict(config), sort_keys=True)
