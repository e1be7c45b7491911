"""What the commands read, in one place: every command (`sample`, `predict`, `extend`,
`interpolate`, `upsample`, `evaluate`; training's caption batches) imports its inputs from here.

- Checkpoints: `DEFAULT_CHECKPOINT`, `resolve_checkpoint` (as given, or relative to the
  repository root; `vdm_fast.generation.open_model` loads it, every failure one line).
- Input videos: `load_input_video` (a file or a folder of frames at the model's size).
- Dataset clips: `moving_mnist_settings` (the checkpoint's data record), `moving_mnist_data`,
  `dataset_clips`, `digit_size_default`.
- The condition c (Eq. 6): `one_hot` (labels), `ConditionEncoder` (captions -> MiniLM token
  embeddings, padded to `CAPTION_TOKENS` as in training), `null_condition` (c = 0).
- Command-line checks: `InputError` (a bad input, a ValueError), `UsageError` (the one-line exit
  of a command), `usage_errors` (turns the first into the second), `check_flags`,
  `check_writable`.

Functions here raise `InputError`; commands run them inside `usage_errors(...)`, so a user sees
one line naming the flag or file and what was expected, and a library caller gets an exception.
This module imports only the model layer (`vdm_fast.text_encoder`) and `vdm_ref`: the
application packages import it, never the reverse.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "CAPTION_TOKENS", "DEFAULT_BASE_CHECKPOINT", "DEFAULT_CHECKPOINT", "TEXT_CHECKPOINT", "ConditionEncoder", "InputError", "UsageError", "check_flags",
    "check_writable", "dataset_clips", "digit_size_default", "load_input_video", "moving_mnist_data",
    "each_class", "moving_mnist_settings", "null_condition", "one_hot", "resolve_checkpoint", "unfamiliar_caption", "usage_errors",
]

#: The Moving MNIST checkpoint shipped with the repository (relative to the repository root).
DEFAULT_CHECKPOINT = "checkpoints/mnist-small"
#: The shipped base model of the Fig. 2 cascade: 16x16 at frameskip 2, caption-conditioned.
DEFAULT_BASE_CHECKPOINT = "checkpoints/mnist-base-16"
#: The shipped caption-conditioned Moving MNIST model (16x16, frameskip 2).
TEXT_CHECKPOINT = "checkpoints/mnist-text-16"
#: Tokens per caption, [CLS] and [SEP] included: training pads and truncates every caption to this.
CAPTION_TOKENS = 32
_ROOT = Path(__file__).resolve().parents[1]


class InputError(ValueError):
    """A bad input (flag value, file, video): names it and says what was expected."""


class UsageError(SystemExit):
    """Bad command-line input: exits with one line ("error: what and why"), no traceback."""

    def __init__(self, message: str):
        text = " ".join(str(message).split())
        super().__init__(text if text.startswith("error:") else f"error: {text}")


@contextlib.contextmanager
def usage_errors(*errors: type[BaseException], prefix: str = ""):
    """Inside the block, InputError (and `errors`, e.g. ValueError around sampling) become a
    one-line `UsageError`, `prefix` put before the message."""
    try:
        yield
    except (InputError, *errors) as e:
        raise UsageError(prefix + (str(e) or type(e).__name__)) from e


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_flags(values: dict, *, minimums: dict | None = None, positive: Sequence[str] = (),
                finite: Sequence[str] = (), unit_interval: Sequence[str] = ()) -> None:
    """Raise InputError naming the first bad flag, before any work.

    **Arguments:** `values`: flag name (snake case) -> value (None values are not checked);
    `minimums`: name -> least allowed value; `positive`: names that must be > 0;
    `finite`: names whose value must be a finite number; `unit_interval`: names in [0, 1].
    A "seed" in `values` must fit jax's int64 key (with room for the seed + 1 of later blocks).
    """
    def bad(name, expected):
        raise InputError(f"{_flag(name)} {values[name]}: expected {expected}")

    present = {k: v for k, v in values.items() if v is not None}
    for name in finite:
        if name in present and not math.isfinite(present[name]):
            bad(name, "a finite number")
    for name, least in (minimums or {}).items():
        if name in present and not present[name] >= least:
            bad(name, f">= {least}")
    for name in positive:
        if name in present and not present[name] > 0:
            bad(name, "> 0")
    for name in unit_interval:
        if name in present and not 0 <= present[name] <= 1:
            bad(name, "a value in [0, 1]")
    if "seed" in present and not -(2**63) <= present["seed"] < 2**63 - 1:
        bad("seed", "an integer in [-2**63, 2**63 - 2]")


def first_free(stem: Path, paths_of: Callable[[Path], Iterable[Path]]) -> Path:
    """`stem`, or the first of stem-2, stem-3, ... none of whose files `paths_of(stem)` exists:
    where a command writes to its default path, earlier results are kept, never replaced."""
    stem = Path(stem)
    candidate, n = stem, 1
    while any(p.exists() for p in paths_of(candidate)):
        n += 1
        candidate = stem.parent / f"{stem.name}-{n}"
    return candidate


def check_writable(path: str | Path, flag: str) -> None:
    """Raise InputError unless a file can be written at `path`: not a folder, and its nearest
    existing ancestor a writable folder (checked before long work, created only when writing)."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{flag} {path}: is a folder; expected a file path")
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise InputError(f"{flag} {path}: cannot create it, {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path}: the folder {anc} is not writable")


# ---------------------------------------------------------------------------------------------
# Checkpoints


def resolve_checkpoint(path: str, flag: str = "--checkpoint") -> Path:
    """The checkpoint path as given, or relative to the repository root; InputError if absent."""
    p = Path(path)
    if p.exists():
        return p
    q = _ROOT / p
    if not p.is_absolute() and q.exists():
        return q
    raise InputError(f"{flag}: no checkpoint at {path!r}: expected a checkpoint directory (meta.json + "
                     "arrays.npz) or a training run directory (with checkpoints/step_*); train one with "
                     "`python cli.py train`"
                     + (f" (the default {DEFAULT_CHECKPOINT!r} ships with the repository: is this a full clone?)"
                        if path == DEFAULT_CHECKPOINT else ""))


# ---------------------------------------------------------------------------------------------
# Input videos and dataset clips


def load_input_video(path: str, model, *, batch_size: int, resize: bool = False, max_frames: int | None = None,
                     own_size: bool = False, flag: str = "--video") -> np.ndarray:
    """A video file (MP4/GIF/...) or a folder of frames as [batch_size, T, H, W, C] in [-1, 1],
    in the model's channels.

    Its frames must be the model's size unless `resize` (centre-crop and resize); with
    `own_size` they keep their size, centre-cropped to a square (a low-resolution input).
    InputError for a missing, unreadable or non-video file.
    """
    from vdm_ref.support.data import VideoReadError, from_uint8, read_video, resize_center_crop

    if not Path(path).exists():
        raise InputError(f"{flag}: no video at {path!r}")
    try:
        frames = read_video(path, max_frames=max_frames)
    except VideoReadError as e:
        raise InputError(f"{flag} {e}") from e
    _, h, w, _ = frames.shape
    size = min(h, w) if own_size else model.image_size
    if not own_size and (h, w) != (size, size) and not resize:
        raise InputError(f"{flag} {path} is {h}x{w}: the model takes {size}x{size} frames; pass --resize to "
                         "centre-crop and resize it")
    frames = np.stack([resize_center_crop(f, size, model.channels) for f in frames])
    return np.repeat(from_uint8(frames)[None], batch_size, axis=0)


def digit_size_default(resolution: int) -> int:
    """Moving MNIST digit size for a frame size when the checkpoint does not record it: 28 at 64."""
    return max(4, round(resolution * 28 / 64))


def moving_mnist_settings(model) -> dict:
    """The Moving MNIST settings of the model's training data, from the checkpoint's "data" record
    (`python cli.py train` writes mnist_digits, mnist_digit_size, mnist_speed; generic keys such as
    digit_size are read too), with defaults for what it does not record."""
    data = dict(model.meta.get("data", {}) or {})
    out = {"resolution": model.image_size, "frameskip": model.unet.frameskip}
    for key, name in (("mnist_digits", "num_digits"), ("num_digits", "num_digits"),
                      ("mnist_digit_size", "digit_size"), ("digit_size", "digit_size"),
                      ("mnist_speed", "speed"), ("speed", "speed"), ("motion", "motion")):
        if data.get(key) is not None:
            out[name] = tuple(data[key]) if isinstance(data[key], list) else data[key]
    out.setdefault("digit_size", digit_size_default(model.image_size))
    out["digit_size"] = min(int(out["digit_size"]), model.image_size)
    return out


def moving_mnist_data(model, num_clips: int, *, num_frames: int, seed: int = 1234, what: str = "--clip"):
    """The Moving MNIST the model was trained on (settings from the checkpoint), drawn from the
    MNIST test digits with a seed of their own, so not training clips: a `MovingMNIST` of
    `num_clips` clips (`.batch(indices)`, `.labels`, `.captions`). InputError, naming `what`
    needs the clips, if the model was trained on other data."""
    from vdm_ref.support.data import MovingMNIST

    data = model.meta.get("data", {}) or {}
    kind = "folder" if data.get("data_dir") else data.get("dataset", model.config.dataset)
    if kind not in ("moving_mnist", "", None):
        raise InputError(f"{what} reads clips of the model's Moving MNIST, but the model was trained on "
                         f"{data.get('data_dir') or kind!r}" + (": pass --video" if what == "--clip" else ""))
    return MovingMNIST(num_clips, num_frames=num_frames, split="test", seed=seed, **moving_mnist_settings(model))


def unfamiliar_caption(model, caption: str, clips: int = 500) -> str | None:
    """Why `caption` is unlike the captions of the Moving MNIST the model was trained on
    (`caption_fidelity.unfamiliar_caption` against those of `clips` clips of `moving_mnist_data`),
    or None: also for a model trained on other data, whose captions are not known here."""
    from vdm_ref.support.eval.caption_fidelity import unfamiliar_caption as against

    try:
        ds = moving_mnist_data(model, clips, num_frames=model.frames, what="the training captions")
    except InputError:
        return None
    return against(caption, list(ds.captions))


def dataset_clips(model, indices, *, num_frames: int, seed: int = 1234) -> np.ndarray:
    """Clips `indices` of `moving_mnist_data`: [len(indices), num_frames, H, W, C]."""
    indices = np.asarray(indices, np.int64)
    ds = moving_mnist_data(model, int(indices.max()) + 1, num_frames=num_frames, seed=seed)
    return ds.batch(indices)


# ---------------------------------------------------------------------------------------------
# The condition c


def one_hot(labels, num_classes: int) -> np.ndarray:
    """Class labels [B] -> float32 one-hot [B, num_classes] (the class condition c)."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise InputError(f"class labels {bad[:5].tolist()} outside [0, {num_classes})")
    return np.eye(num_classes, dtype=np.float32)[labels]


def each_class(num: int, num_classes: int) -> list[int]:
    """Class i mod num_classes for item i of num (0, 1, ..., num_classes - 1, 0, ...): what a
    class-conditional model's training previews and `sample --label each` draw."""
    return [i % num_classes for i in range(num)]


def null_condition(cond):
    """The null condition c = 0 the model was trained on by dropping c (Eq. 6,
    `vdm_ref.train.drop_condition`): zeros of a one-hot, or zeroed tokens with the same mask."""
    import jax.numpy as jnp

    if cond is None:
        return None
    if isinstance(cond, (tuple, list)):
        tokens, token_mask = cond
        return (jnp.zeros_like(tokens), token_mask)
    return jnp.zeros_like(cond)


@functools.cache
def _default_text_encoder():
    from vdm_fast.text_encoder import TextEncoder

    return TextEncoder()


class ConditionEncoder:
    """The condition c of a batch for a model's `UNetConfig`, as training builds it:

    - class: `one_hot(labels)` [B, num_classes];
    - text: each caption's MiniLM token embeddings, padded or truncated to `max_length` tokens
      (tokens float32 [B, L, 384], mask bool [B, L]), one row per caption (repeats included),
      memoised per distinct caption;
    - none: None.

    **Arguments:** `unet` (a `UNetConfig`); `text_encoder` (captions, max_length= -> (tokens,
    mask); default: `vdm_fast.text_encoder.TextEncoder`, loaded once per process); `max_length`.
    """

    def __init__(self, unet, *, text_encoder=None, max_length: int = CAPTION_TOKENS):
        self.unet, self.text_encoder, self.max_length = unet, text_encoder, int(max_length)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, *, labels=None, captions=None):
        """c by the model's conditioning: the labels' one-hot, the captions' tokens, or None."""
        kind = self.unet.conditioning
        if kind == "class":
            return self.labels(labels)
        if kind == "text":
            return self.captions(captions)
        return None

    def labels(self, labels) -> np.ndarray:
        """One-hot [B, num_classes]; InputError for a label outside [0, num_classes)."""
        return one_hot(labels, self.unet.num_classes)

    def captions(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(tokens float32 [B, L, 384], mask bool [B, L]) with L = max_length."""
        captions = [str(c) for c in captions]
        missing = [c for c in dict.fromkeys(captions) if c not in self._cache]
        if missing:
            encoder = self.text_encoder or _default_text_encoder()
            emb, mask = encoder(missing, max_length=self.max_length)
            for c, e, m in zip(missing, np.asarray(emb, np.float32), np.asarray(mask, bool)):
                pad = self.max_length - e.shape[0]
                self._cache[c] = (np.pad(e, ((0, pad), (0, 0))), np.pad(m, (0, pad)))
        rows = [self._cache[c] for c in captions]
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])

    def caption_tokens(self, caption: str) -> int:
        """Tokens of `caption` before truncation, [CLS] and [SEP] included."""
        from vdm_ref.text_encoder import tokenize

        return int(tokenize([caption])[1].sum())
