"""`python cli.py evaluate`: FVD and Inception Score of a trained model (Sec. 4.1-4.3) with the
real I3D network, over the protocols of the paper adapted to the model's frame count.

| protocol | what is generated | paper |
|---|---|---|
| `unconditional` | N videos of one block (F frames) from noise (with c of N data clips if conditional) | Sec. 4.1, Tables 4-5 |
| `bair` | given the first frame of N data clips, the rest (1 -> 15 at 16 frames) | Sec. 4.2, Table 2 |
| `kinetics` | given the first 5 frames of N data clips, the rest (5 -> 11 at 16 frames) | Sec. 4.2, Table 3 |
| `extend` | N videos of `extend_factor` x F frames: one block from noise, then block-autoregressive extension | Sec. 4.3.3, Table 6 |

**Frame counts.** The video-prediction protocols are defined on 16-frame videos. A model of F
frames runs them on min(F, 16) frames by default (an 8-frame model: 1 -> 7 and 5 -> 3); with
`length=16` the prediction is carried on block by block to the paper's 16 frames. The
adaptation is written into the results (`protocol.note`).

**I3D and short or grey videos.** I3D takes RGB videos of at least 9 frames. Grey videos
(Moving MNIST) are repeated over the 3 channels. Videos of fewer than 9 frames are, by default,
*temporally upsampled by frame repetition* (each frame shown k = ceil(9/T) times: 8 frames ->
16), for the generated and the real set alike, and the output says so; `short_clips="refuse"`
raises instead. FVDs of repeated videos are comparable only with each other.

**Pairing (Sec. 4.2).** The conditioning frames and captions/labels come from the same N data
clips that form the real set, the lowest-bias choice the paper describes for Kinetics-600. The
data are clips of the model's Moving MNIST training distribution drawn from the MNIST *test*
digits with their own seed (`vdm_fast.generation.commands.dataset_clips`), so not training clips.

**Spread.** Besides the FVD of all N against all N, the N pairs are cut into `fvd_splits`
disjoint parts and the FVD of each is reported as mean ± std (FVD is biased upwards at small N,
so the split FVDs are larger than the full one; compare like with like). IS: mean ± std over
`is_splits` splits, as in `vdm_fast.metrics.inception_score`.

The feature network is a parameter (`embed`): the default is the I3D of `vdm_fast.metrics`;
tests pass a cheap stub.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

PROTOCOLS = ("unconditional", "bair", "kinetics", "extend")
#: (frames given, frames in total) of the paper's video-prediction protocols (Sec. 4.2).
PAPER_PREDICTION = {"bair": (1, 16), "kinetics": (5, 16)}
I3D_MIN_FRAMES = 9
SHORT_CLIPS = ("repeat", "refuse")


class EvaluationError(ValueError):
    """A request that cannot be evaluated (names the value and what was expected); raised before
    any sampling or embedding."""


# ---------------------------------------------------------------------------------------------
# Protocols


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol on a model of `block` frames.

    given: frames given (conditioning; 0 = none); length: frames per video (given included, as in
    the BAIR/Kinetics FVD); note: how it relates to the paper's protocol.
    """

    name: str
    given: int
    length: int
    block: int
    note: str

    @property
    def conditional(self) -> bool:
        """Whether a conditioning method (replacement / reconstruction guidance) is involved."""
        return self.given > 0 or self.length > self.block


def plan_protocol(name: str, block: int, *, length: int | None = None, extend_factor: int = 4) -> Protocol:
    """The protocol `name` for a model of `block` frames (see the module docstring).

    length: frames per video for 'unconditional' / 'bair' / 'kinetics' (default: one block for
    'unconditional', min(block, 16) for the prediction protocols). extend_factor: the length of
    'extend' in blocks (the paper's Table 6: 4, 16 -> 64 frames).
    """
    if name not in PROTOCOLS:
        raise EvaluationError(f"protocol {name!r}: expected one of {PROTOCOLS}")
    f = int(block)
    if name == "unconditional":
        n = f if length is None else int(length)
        if n < 1:
            raise EvaluationError(f"length={length}: expected >= 1")
        note = "one block from noise" if n == f else f"{n} frames: one block, then extended block by block"
        return Protocol(name, 0, n, f, note)
    if name == "extend":
        if int(extend_factor) < 2:
            raise EvaluationError(f"extend_factor={extend_factor}: expected >= 2 blocks")
        n = int(extend_factor) * f
        return Protocol(name, 0, n, f, f"{extend_factor}x autoregressive extension: one block of {f} frames from "
                                       f"noise, then extended to {n} frames (paper, Table 6: 16 -> 64)")
    given, paper_total = PAPER_PREDICTION[name]
    n = min(f, paper_total) if length is None else int(length)
    if given >= f:
        raise EvaluationError(f"protocol {name!r} conditions on {given} frames, but the model's block is {f} frames: "
                              f"it cannot generate anything after them in a block")
    if n <= given:
        raise EvaluationError(f"length={n}: protocol {name!r} needs more than its {given} given frames")
    paper = f"{given} -> {paper_total - given}"
    if n == paper_total:
        note = f"{given} -> {n - given}, as in the paper" + (
            "" if n <= f else f" (carried on block by block: the model's block is {f} frames)")
    else:
        note = (f"{given} -> {n - given} on {n} frames (paper: {paper} on {paper_total}; the model's block is {f} "
                f"frames; pass --length {paper_total} for the paper's count, carried on block by block)")
    return Protocol(name, given, n, f, note)


# ---------------------------------------------------------------------------------------------
# What I3D sees


def i3d_input(videos: np.ndarray, *, short_clips: str = "repeat") -> tuple[np.ndarray, str]:
    """Videos [N, T, H, W, C] as I3D takes them: RGB (grey repeated over 3 channels) and at least
    9 frames (each frame repeated k = ceil(9 / T) times when `short_clips='repeat'`).

    Returns (videos [N, T', H, W, 3] float32, a note saying what was done, '' if nothing).
    """
    if short_clips not in SHORT_CLIPS:
        raise EvaluationError(f"short_clips={short_clips!r}: expected one of {SHORT_CLIPS}")
    v = np.asarray(videos, np.float32)
    if v.ndim != 5:
        raise EvaluationError(f"videos have shape {v.shape}: expected [N, T, H, W, C]")
    notes = []
    if v.shape[-1] == 1:
        v = np.repeat(v, 3, axis=-1)
        notes.append("grey repeated over RGB")
    elif v.shape[-1] != 3:
        raise EvaluationError(f"videos have {v.shape[-1]} channels: I3D takes 3 (RGB) or 1 (repeated)")
    t = v.shape[1]
    k = repeat_factor(t, short_clips)
    if k > 1:
        v = np.repeat(v, k, axis=1)
        notes.append(f"{t} frames < {I3D_MIN_FRAMES} (I3D's minimum): each frame repeated {k}x -> {t * k} frames")
    return v, "; ".join(notes)


def repeat_factor(frames: int, short_clips: str = "repeat") -> int:
    """k = ceil(9 / T) for T < 9 with 'repeat' (1 otherwise); EvaluationError for 'refuse'."""
    if frames >= I3D_MIN_FRAMES:
        return 1
    if short_clips == "refuse":
        raise EvaluationError(f"videos of {frames} frames: I3D needs at least {I3D_MIN_FRAMES} (FVD and IS are "
                              "undefined); pass --short-clips repeat to show each frame ceil(9/T) times, or "
                              "--length >= 9 to generate longer videos block by block")
    return math.ceil(I3D_MIN_FRAMES / frames)


# ---------------------------------------------------------------------------------------------
# Metrics on embeddings


def fvd_with_spread(logits_real: np.ndarray, logits_gen: np.ndarray, splits: int) -> dict:
    """FVD of all N against all N, and over `splits` disjoint parts of the N pairs (mean, std).

    logits_*: [N, D] I3D logits (the FVD layer). Each part needs >= 2 rows.
    """
    from vdm_ref.metrics import frechet_distance_from_features

    a, b = np.asarray(logits_real, np.float64), np.asarray(logits_gen, np.float64)
    out = {"fvd": float(frechet_distance_from_features(a, b)), "fvd_splits": int(splits)}
    if splits > 1:
        parts = [float(frechet_distance_from_features(a[i], b[i]))
                 for i in _split_rows(min(len(a), len(b)), splits)]
        out.update(fvd_split_values=parts, fvd_split_mean=float(np.mean(parts)), fvd_split_std=float(np.std(parts)))
    return out


def _split_rows(n: int, k: int) -> list[slice]:
    return [slice(i * n // k, (i + 1) * n // k) for i in range(k)]


def inception_score_with_spread(logits: np.ndarray, splits: int) -> dict:
    from vdm_ref.metrics import inception_score_from_logits

    mean, std = inception_score_from_logits(np.asarray(logits, np.float64), int(splits))
    return {"is": float(mean), "is_std": float(std), "is_splits": int(splits)}


# ---------------------------------------------------------------------------------------------
# The evaluation


Embed = Callable[[np.ndarray], np.ndarray]  # videos [N, T, H, W, 3] -> logits [N, D]


@dataclass
class EvalSettings:
    """What to evaluate (the fields of the CLI command that are not about output)."""

    protocols: tuple[str, ...] = ("unconditional", "bair", "kinetics")
    num_samples: int = 32
    methods: tuple[str, ...] = ("reconstruction",)
    w_r: float | None = None
    guidance_weight: float | None = None
    steps: int | None = None
    gamma: float | None = None
    corrector: bool | None = None
    length: int | None = None
    extend_factor: int = 4
    seed: int = 0
    batch_size: int = 8
    is_splits: int = 1
    fvd_splits: int = 4
    short_clips: str = "repeat"
    resize: str = "antialias"
    i3d_batch_size: int = 8
    data_seed: int = 1234
    coherence: bool = True

    def check(self, block: int) -> list[Protocol]:
        """Every setting checked and each protocol planned, before any work (EvaluationError)."""
        from vdm_fast.generation.engine import METHODS

        if not self.protocols:
            raise EvaluationError("no protocol given: expected some of " + ", ".join(PROTOCOLS))
        if self.num_samples < 2:
            raise EvaluationError(f"num_samples={self.num_samples}: FVD needs at least 2 videos per set")
        if not 1 <= self.fvd_splits <= self.num_samples // 2:
            raise EvaluationError(f"fvd_splits={self.fvd_splits}: expected 1 .. num_samples/2 = "
                                  f"{self.num_samples // 2} (each split needs >= 2 videos)")
        if not 1 <= self.is_splits <= self.num_samples:
            raise EvaluationError(f"is_splits={self.is_splits}: expected 1 .. num_samples = {self.num_samples}")
        if self.batch_size < 1 or self.i3d_batch_size < 1:
            raise EvaluationError(f"batch sizes must be >= 1, got {self.batch_size}, {self.i3d_batch_size}")
        for m in self.methods:
            if m not in METHODS:
                raise EvaluationError(f"method {m!r}: expected one of {METHODS}")
        if not self.methods:
            raise EvaluationError(f"no conditioning method given: expected some of {METHODS}")
        if self.short_clips not in SHORT_CLIPS:
            raise EvaluationError(f"short_clips={self.short_clips!r}: expected one of {SHORT_CLIPS}")
        if self.resize not in ("antialias", "tf1"):
            raise EvaluationError(f"resize={self.resize!r}: expected 'antialias' or 'tf1'")
        plans = []
        for name in dict.fromkeys(self.protocols):
            p = plan_protocol(name, block, length=None if name == "extend" else self.length,
                              extend_factor=self.extend_factor)
            repeat_factor(p.length, self.short_clips)  # refuse short clips now, not after sampling
            plans.append(p)
        return plans


def reference_clips(model, num: int, frames: int, *, seed: int = 1234):
    """N clips of the model's Moving MNIST distribution (MNIST test digits, their own seed) with
    their labels and captions: (videos [N, frames, H, W, C], labels [N], captions)."""
    from vdm_fast.generation.commands import moving_mnist_settings
    from vdm_ref.support.data import MovingMNIST

    data = model.meta.get("data", {}) or {}
    kind = data.get("dataset", model.config.dataset)
    if data.get("data_dir") or kind not in ("moving_mnist", "", None):
        raise EvaluationError(f"the model was trained on {data.get('data_dir') or kind!r}: evaluate compares with "
                              "the embedded Moving MNIST only (the data the paper's ablations are re-run on here)")
    ds = MovingMNIST(num, num_frames=frames, split="test", seed=seed, **moving_mnist_settings(model))
    return ds.batch(np.arange(num)), ds.labels, ds.captions


def conditions(model, labels, captions, text_encoder=None):
    """The condition c of each clip for a conditional model: one-hot labels or caption token
    embeddings (the training pipeline's encoding, `Batcher.captions`); None if unconditional."""
    kind = model.unet.conditioning
    if kind == "none":
        return None
    if kind == "class":
        from vdm_fast.generation.engine import one_hot

        return one_hot(labels, model.unet.num_classes)
    from vdm_fast.training.loop import Batcher

    return Batcher(None, model.config, 0, text_encoder=text_encoder).captions(list(captions))


def _cond_rows(cond, rows: slice):
    if cond is None:
        return None
    if isinstance(cond, tuple):
        return tuple(c[rows] for c in cond)
    return cond[rows]


def generate(model, protocol: Protocol, real: np.ndarray, cond, options, *, seed: int, batch_size: int,
             tick: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[int]]:
    """N videos of `protocol` (module docstring) in batches; real: the N data clips (the
    conditioning frames of the prediction protocols). Returns (videos, block boundaries)."""
    import jax

    from vdm_fast.generation import predict, sample

    n = real.shape[0]
    key = jax.random.key(seed)
    outs, boundaries = [], set()
    for b, start in enumerate(range(0, n, batch_size)):
        rows = slice(start, min(start + batch_size, n))
        k = jax.random.fold_in(key, b)
        c = _cond_rows(cond, rows)
        if protocol.given:
            video, windows = predict(model, k, real[rows], given_frames=protocol.given, length=protocol.length,
                                     cond=c, options=options, return_windows=True)
        else:
            video, windows = sample(model, k, batch_size=rows.stop - rows.start, length=protocol.length, cond=c,
                                    options=options, return_windows=True)
        boundaries.update(w.boundary for w in windows if w.boundary is not None)
        outs.append(np.asarray(video, np.float32))
        if tick is not None:
            tick(rows.stop - rows.start)
    return np.concatenate(outs), sorted(boundaries)


def default_embed(resize: str = "antialias", batch_size: int = 8, tick=None) -> Embed:
    """The I3D Kinetics-400 logits (`vdm_fast.metrics.i3d_embeddings`), the network loaded once."""
    from vdm_fast.metrics import i3d_embeddings, load_i3d

    net = load_i3d()

    def embed(videos):
        done = [0]

        def progress(k, total):
            if tick is not None:
                tick(k - done[0])
            done[0] = k

        return np.asarray(i3d_embeddings(videos, model=net, batch_size=batch_size, resize=resize,
                                         progress=progress).logits)

    return embed


def evaluate(model, settings: EvalSettings, *, embed: Embed | None = None, progress: bool = True,
             save_videos: str | Path | None = None, keep: int = 4) -> dict:
    """Run every protocol of `settings` on `model`; returns the results dict (what `--out` holds).

    embed: videos [N, T, H, W, 3] -> I3D logits [N, D] (default: the real I3D, `default_embed`).
    save_videos: a folder for a PNG frame grid of the first `keep` videos of each run (and of the
    real clips). Every check happens before sampling starts (EvaluationError).
    """
    from vdm_fast.generation import SamplerOptions
    from vdm_fast.generation.model import describe

    plans = settings.check(model.frames)
    try:
        base = SamplerOptions.from_config(model.config.diffusion, steps=settings.steps, gamma=settings.gamma,
                                          corrector=settings.corrector, guidance_weight=settings.guidance_weight,
                                          w_r=settings.w_r)
    except ValueError as e:
        raise EvaluationError(str(e)) from e
    if base.guidance_weight > 0 and model.unet.conditioning == "none":
        raise EvaluationError(f"guidance_weight={base.guidance_weight}: the model is unconditional")
    n = settings.num_samples
    runs = [(p, m) for p in plans for m in (settings.methods if p.conditional else ("none",))]
    gen_total = n * len(runs)
    lengths = sorted({p.length for p in plans})
    real_max = max(lengths)
    # cost: generated videos + real sets (one per length), each through I3D
    emb_total = n * (len(runs) + len(lengths))
    bar = _Bar(progress, gen_total + emb_total)
    if embed is None:
        from vdm_ref.support.i3d_weights import I3DWeightsError

        try:  # the weights are loaded and SHA-256-checked here, before any sampling
            embed = default_embed(settings.resize, settings.i3d_batch_size, tick=bar.tick)
        except I3DWeightsError as e:
            bar.close()
            raise EvaluationError(f"the I3D weights are not available: {e}") from e
        embed_ticks = True
    else:
        embed_ticks = False

    real_all, labels, captions = reference_clips(model, n, real_max, seed=settings.data_seed)
    cond = conditions(model, labels, captions)
    results = {
        "model": describe(model), "checkpoint": model.meta.get("checkpoint"), "step": model.meta.get("step"),
        "settings": dataclasses.asdict(settings),
        "sampler": dataclasses.asdict(base),
        "data": {"source": "Moving MNIST, MNIST test digits", "seed": settings.data_seed, "num_clips": n,
                 "pairing": "conditioning frames and c taken from the same clips as the real set (Sec. 4.2)"},
        "feature_network": "I3D Kinetics-400 logits (vdm_fast.metrics)" if embed_ticks else "custom embed",
        "real": {}, "runs": [],
    }
    t_start = time.perf_counter()
    real_logits = {}
    for length in lengths:
        x, note = i3d_input(real_all[:, :length], short_clips=settings.short_clips)
        bar.describe(f"I3D on {n} real {length}-frame clips")
        real_logits[length] = np.asarray(embed(x))
        if not embed_ticks:
            bar.tick(n)
        results["real"][str(length)] = dict(inception_score_with_spread(real_logits[length], settings.is_splits),
                                            i3d_input=note or "as is")
    for p, method in runs:
        options = dataclasses.replace(base, method=method) if method != "none" else base
        bar.describe(f"{p.name}{'' if method == 'none' else ' / ' + method}: sampling")
        t0 = time.perf_counter()
        video, boundaries = generate(model, p, real_all[:, :p.length], cond, options,
                                     seed=settings.seed, batch_size=settings.batch_size, tick=bar.tick)
        t_sample = time.perf_counter() - t0
        outside = float(np.mean(np.abs(video) > 1.0))
        video = np.clip(video, -1.0, 1.0)  # the data range I3D is defined on (a uint8 export clips too)
        x, note = i3d_input(video, short_clips=settings.short_clips)
        bar.describe(f"{p.name}{'' if method == 'none' else ' / ' + method}: I3D")
        logits = np.asarray(embed(x))
        if not embed_ticks:
            bar.tick(n)
        row = {"protocol": p.name, "method": method, "given": p.given, "length": p.length, "note": p.note,
               "i3d_input": note or "as is", "num_samples": n, "sampling_seconds": round(t_sample, 1),
               "clipped_fraction": outside}
        if p.conditional:
            row["w_r"] = options.effective_w_r
        row.update(fvd_with_spread(real_logits[p.length], logits, settings.fvd_splits))
        row.update(inception_score_with_spread(logits, settings.is_splits))
        if p.given:  # the given frames must come back unchanged
            row["given_frames_max_abs_error"] = float(np.max(np.abs(video[:, :p.given] - real_all[:, :p.given])))
        if save_videos is not None:
            from vdm_ref.support.data import write_frame_grid

            row["frames_png"] = str(write_frame_grid(Path(save_videos) / f"{p.name}_{method}.png", video[:keep]))
            write_frame_grid(Path(save_videos) / f"real_{p.length}.png", real_all[:keep, :p.length])
        if boundaries and settings.coherence and model.unet.in_channels == 1:
            row["coherence"] = _coherence(model, video, boundaries)
        results["runs"].append(row)
    bar.close()
    results["seconds"] = round(time.perf_counter() - t_start, 1)
    return results


def _coherence(model, video, boundaries) -> dict:
    """The generation engineer's Moving MNIST boundary coherence (vdm_ref.support.eval), if it applies."""
    from vdm_fast.generation.commands import moving_mnist_settings
    from vdm_ref.support.eval import boundary_coherence

    r = boundary_coherence(video, boundaries, int(moving_mnist_settings(model)["digit_size"]))
    d = {k: v for k, v in r.as_dict().items() if k != "per_boundary"}
    return d | {"boundaries": [int(b) for b in boundaries]}


class _Bar:
    """One progress bar over videos generated and videos embedded."""

    def __init__(self, enabled: bool, total: int):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="video", desc="evaluate", file=sys.stderr)

    def tick(self, k: int):
        if self.bar is not None and k:
            self.bar.update(k)

    def describe(self, text: str):
        if self.bar is not None:
            self.bar.set_description(text)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------
# Printing


def _pm(mean, std, fmt="{:.1f}"):
    return (fmt + " ± " + fmt).format(mean, std)


def format_table(results: dict) -> str:
    """The results as a plain-text table (one row per protocol and method)."""
    rows = [("protocol", "method", "frames", "N", "FVD (all)", "FVD (splits)", "IS", "coherence b/w")]
    for r in results["runs"]:
        split = _pm(r["fvd_split_mean"], r["fvd_split_std"]) + f" ({r['fvd_splits']})" if r["fvd_splits"] > 1 else "-"
        frames = f"{r['given']}->{r['length'] - r['given']}" if r["given"] else str(r["length"])
        coh = r.get("coherence")
        coh = f"{coh['boundary']:.3f}/{coh['within']:.3f}" if coh else "-"
        rows.append((r["protocol"], r["method"] + (f" w_r={r['w_r']:g}" if r.get("w_r") else ""), frames,
                     str(r["num_samples"]), f"{r['fvd']:.1f}", split, _pm(r["is"], r["is_std"], "{:.3f}"), coh))
    for length, r in results["real"].items():
        rows.append(("real data", "-", length, str(results["data"]["num_clips"]), "-", "-",
                     _pm(r["is"], r["is_std"], "{:.3f}"), "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"- {r['protocol']}: {r['note']}" for r in results["runs"] if r["method"] in ("none", results["settings"]["methods"][0])]
    inputs = sorted({r["i3d_input"] for r in results["runs"]} | {r["i3d_input"] for r in results["real"].values()})
    return "\n".join(lines + ["", "protocols:"] + notes + ["I3D input: " + "; ".join(inputs)])


# ---------------------------------------------------------------------------------------------
# The command


@dataclasses.dataclass
class Evaluate:
    """Evaluate a checkpoint with FVD and Inception Score on the real I3D (Sec. 4): unconditional
    generation, video prediction (BAIR 1 -> 15, Kinetics-600 5 -> 11, adapted to the model's
    frames), autoregressive extension; against clips of the model's Moving MNIST data.

    Writes the results as JSON (--out) and prints a table. See docs/evaluation.md.
    Example: python cli.py evaluate --num-samples 32 --protocols unconditional bair
    """

    checkpoint: str = "checkpoints/mnist-small"
    """Checkpoint directory, or a training run directory (its newest checkpoint)."""
    protocols: tuple[Literal["unconditional", "bair", "kinetics", "extend"], ...] = ("unconditional", "bair", "kinetics")
    """Protocols to run (module docstring of vdm_fast.evaluate)."""
    num_samples: int = 32
    """N: generated videos per protocol and method, and real clips compared with them."""
    methods: tuple[Literal["reconstruction", "replacement"], ...] = ("reconstruction",)
    """Conditioning methods for bair / kinetics / extend (Sec. 3.1); each is a row."""
    w_r: float | None = None
    """Reconstruction guidance weight w_r (Eq. 7; default: the config's, else 5)."""
    guidance_weight: float | None = None
    """Classifier-free guidance weight w (Eq. 6) for class/text models (c from the real clips)."""
    steps: int | None = None
    """Sampling steps (default: the config's sampling_steps)."""
    gamma: float | None = None
    """γ of the ancestral sampler (Eq. 4; default: the config's)."""
    corrector: bool | None = None
    """Predictor-corrector sampler (Eq. 5; default: the config's)."""
    length: int | None = None
    """Frames per video of unconditional/bair/kinetics (default: one block; prediction: min(block, 16))."""
    extend_factor: int = 4
    """Length of the 'extend' protocol in blocks (Table 6: 4)."""
    seed: int = 0
    """Seed of the sampling."""
    data_seed: int = 1234
    """Seed of the real Moving MNIST clips (MNIST test digits)."""
    batch_size: int = 8
    """Videos sampled at once."""
    is_splits: int = 1
    """Inception Score splits (the paper: 1 and 10)."""
    fvd_splits: int = 4
    """Disjoint splits of the N pairs for the FVD spread (mean ± std)."""
    short_clips: Literal["repeat", "refuse"] = "repeat"
    """Videos under 9 frames: repeat each frame ceil(9/T) times for I3D (said in the output), or refuse."""
    resize: Literal["antialias", "tf1"] = "antialias"
    """Resize to 224x224 for I3D ('tf1': the original FVD code's)."""
    i3d_batch_size: int = 8
    """Videos per I3D call."""
    coherence: bool = True
    """Also report the Moving MNIST boundary coherence of block-extended videos."""
    out: str = ""
    """JSON output path (default: evaluations/<checkpoint name>.json)."""
    save_videos: str = ""
    """A folder for PNG frame grids of the first 4 videos of each row (and of the real clips)."""
    backend: Literal["fast", "ref"] = "fast"
    """Network backend for sampling."""
    ema: bool = True
    """Use the EMA parameters when the checkpoint has them."""
    progress: bool = True
    """Show the progress bar."""

    def settings(self) -> EvalSettings:
        names = {f.name for f in dataclasses.fields(EvalSettings)}
        return EvalSettings(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})

    def run(self, *, embed: Embed | None = None) -> dict:
        from vdm_fast.generation.commands import UsageError, resolve_checkpoint
        from vdm_fast.generation.model import load_model

        path = resolve_checkpoint(self.checkpoint)
        try:
            model = load_model(path, backend=self.backend, ema=self.ema)
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(str(e)) from e
        settings = self.settings()
        try:
            results = evaluate(model, settings, embed=embed, progress=self.progress,
                               save_videos=self.save_videos or None)
        except EvaluationError as e:
            raise UsageError(f"error: {e}") from e
        out = Path(self.out or f"evaluations/{Path(str(path)).name}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1, default=_json_default))
        print(results["model"])
        print(format_table(results))
        print(f"wrote {out} ({results['seconds']:.0f} s)")
        return results


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m vdm_fast.evaluate ...` (the same as `python cli.py evaluate ...`)."""
    import tyro

    tyro.cli(Evaluate, args=argv).run()


if __name__ == "__main__":
    main()
