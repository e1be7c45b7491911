"""The evaluation itself: generate N videos per protocol and method, embed them and N real clips
with I3D, and measure FVD and Inception Score with their spread (see the package docstring)."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vdm_fast.inputs import ConditionEncoder, moving_mnist_data, moving_mnist_settings

from .protocols import EvaluationError, Protocol, i3d_input
from .settings import EvalSettings

Embed = Callable[[np.ndarray], np.ndarray]  # videos [N, T, H, W, 3] -> logits [N, D]


def reference_clips(model, num: int, frames: int, *, seed: int = 1234):
    """N clips of the model's Moving MNIST distribution (`vdm_fast.inputs.moving_mnist_data`:
    MNIST test digits, their own seed) with their labels and captions: (videos [N, frames, H, W,
    C], labels [N], captions)."""
    ds = moving_mnist_data(model, num, num_frames=frames, seed=seed, what="evaluate")
    return ds.batch(np.arange(num)), ds.labels, ds.captions


def conditions(model, labels, captions, text_encoder=None):
    """The condition c of each clip, encoded as training encodes it (`ConditionEncoder`): one-hot
    labels or caption token embeddings; None if the model is unconditional."""
    return ConditionEncoder(model.unet, text_encoder=text_encoder)(labels=labels, captions=list(captions))


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


def _cond_rows(cond, rows: np.ndarray):
    if cond is None:
        return None
    if isinstance(cond, tuple):
        return tuple(c[rows] for c in cond)
    return cond[rows]


def generate(model, protocol: Protocol, real: np.ndarray, cond, options, *, seed: int, batch_size: int,
             tick: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[int]]:
    """N videos of `protocol` (package docstring) in batches; real: the N data clips (the
    conditioning frames of the prediction protocols). Returns (videos, block boundaries).

    A short last batch is filled up to `batch_size` by repeating its last row (the extra videos
    are dropped), so every batch has one shape and the sampler compiles once."""
    import jax

    from vdm_fast.generation import predict, sample

    n = real.shape[0]
    batch_size = min(batch_size, n)
    key = jax.random.key(seed)
    outs, boundaries = [], set()
    for b, start in enumerate(range(0, n, batch_size)):
        rows = np.minimum(np.arange(start, start + batch_size), n - 1)
        kept = min(batch_size, n - start)
        k = jax.random.fold_in(key, b)
        c = _cond_rows(cond, rows)
        if protocol.given:
            video, windows = predict(model, k, real[rows], given_frames=protocol.given, length=protocol.length,
                                     cond=c, options=options, return_windows=True)
        else:
            video, windows = sample(model, k, batch_size=batch_size, length=protocol.length, cond=c,
                                    options=options, return_windows=True)
        boundaries.update(w.boundary for w in windows if w.boundary is not None)
        outs.append(np.asarray(video, np.float32)[:kept])
        if tick is not None:
            tick(kept)
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
        "settings": dataclasses.asdict(settings.settings()),
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
    """The Moving MNIST boundary coherence (vdm_ref.support.eval) of block-extended videos."""
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
