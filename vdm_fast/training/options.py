"""What a training job is: the resolved configuration (a preset with flag overrides) and the
options of the run (`TrainOptions`), built by the CLI command `Train`."""

from __future__ import annotations

import dataclasses

from vdm_ref.configs import Config, DiffusionConfig, TrainConfig, UNetConfig, get_preset
from vdm_ref.train import Recipe

from .data import DataOptions
from .errors import TrainError

UNET_FIELDS = {f.name for f in dataclasses.fields(UNetConfig)}
DIFFUSION_FIELDS = {f.name for f in dataclasses.fields(DiffusionConfig)}
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}

#: Config fields whose `python cli.py train` flag is not `--<field-name>`.
FLAG_NAMES = {"train_steps": "--steps"}


def flag(field: str) -> str:
    """The CLI flag of a config field: `--steps` for train_steps, else `--<field-with-dashes>`."""
    return FLAG_NAMES.get(field, "--" + field.replace("_", "-"))


def resolve_config(preset: str, overrides: dict) -> Config:
    """The preset with every non-None override applied; TrainError on a conflict.

    overrides: field name -> value for UNetConfig / DiffusionConfig / TrainConfig fields (the
    number of steps is 'train_steps'). A value the preset's other fields cannot accommodate (an
    attention resolution that is no longer a level, a channel count not divisible by the groups,
    a resolution not divisible by 2**(K−1), ...) is reported with both the flags and the preset.
    """
    try:
        base = get_preset(preset)
    except ValueError as e:
        raise TrainError(f"--preset: {e}") from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - UNET_FIELDS - DIFFUSION_FIELDS - TRAIN_FIELDS
    if unknown:
        raise TrainError(f"unknown hyperparameter(s) {sorted(unknown)}")
    channels = {k: overrides.get(k, getattr(base.unet, k)) for k in ("in_channels", "out_channels")}
    if channels["in_channels"] != channels["out_channels"]:
        given = " ".join(f"{flag(k)} {v}" for k, v in channels.items() if k in overrides)
        raise TrainError(f"preset {preset!r} with {given}: in_channels={channels['in_channels']} but "
                         f"out_channels={channels['out_channels']}; the network predicts ε or v, which has "
                         "the video's channels: give --in-channels and --out-channels the same value")
    groups = (("unet", UNET_FIELDS, base.unet), ("diffusion", DIFFUSION_FIELDS, base.diffusion),
              ("train", TRAIN_FIELDS, base.train))
    parts = {}
    for name, fields, sub in groups:
        changes = {k: v for k, v in overrides.items() if k in fields}
        try:
            parts[name] = dataclasses.replace(sub, **changes)
        except (ValueError, TypeError) as e:
            flags = " ".join(f"{flag(k)} {fmt_value(v)}" for k, v in changes.items())
            raise TrainError(f"preset {preset!r} with {flags}: {e}") from None
    return dataclasses.replace(base, **parts, notes=_noted(base, overrides))


def _noted(base: Config, overrides: dict) -> str:
    """The preset's notes, plus the flags that changed its recipe (the step budget aside), so a
    checkpoint's config does not describe, say, a class-conditional run as the preset's
    unconditional model."""
    changed = [f"{flag(k)} {fmt_value(v)}" for k, v in overrides.items() if k != "train_steps"
               and not same_value(v, getattr(getattr(base, section(k)), k))]
    if not changed:
        return base.notes
    return f"{base.notes} Trained with {' '.join(changed)}.".strip()


def section(field: str) -> str:
    """The part of a `Config` that holds a hyperparameter field: "unet", "diffusion" or "train"."""
    return "unet" if field in UNET_FIELDS else "diffusion" if field in DIFFUSION_FIELDS else "train"


def same_value(a, b) -> bool:
    """A flag's value equals a config field's (a list flag against a tuple field compares items)."""
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return tuple(a) == tuple(b)
    return a == b


def fmt_value(v) -> str:
    """A flag's value as typed on the command line (lists space-separated)."""
    return " ".join(str(x) for x in v) if isinstance(v, (tuple, list)) else str(v)


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Everything a training job needs (built by the CLI command `Train`)."""

    config: Config
    recipe: Recipe
    data: DataOptions
    run_dir: str
    backend: str = "fast"
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    minutes: float | None = None
    init_from: str | None = None
    log_every: int = 25
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    sample_every: int = 0
    num_samples: int = 8
    sample_steps: int = 64
    data_parallel: int = -1
    fsdp: int = 1
    skip_memory_check: bool = False
    compute_dtype: str | None = None
    remat: bool = False
    batch_parts: int | None = None
    progress: bool = True
    mp4: bool = True
