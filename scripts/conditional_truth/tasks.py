"""The three measured tasks on one model, each returning (JSON-able results, videos to keep).

Every task draws the same real clips for a seed (`truth_clips`: the model's Moving MNIST settings,
held-out MNIST test digits) and uses the seed as the sampling key of every model row, so rows of
one seed differ only in the method. The generation goes through the library
(`vdm_fast.generation`: sample, upsample, predict, extend, run_timeline), as `python cli.py` does.
"""

from __future__ import annotations

import time

import numpy as np

from vdm_fast.generation import SamplerOptions, Timeline, extend, predict, run_timeline, sample, upsample
from vdm_fast.inputs import moving_mnist_data
from vdm_ref.guidance import downsample_area
from vdm_ref.support.eval import boundary_coherence, reference_scores
from vdm_ref.support.eval.sample_quality import JUMP_TOLERANCE, digit_sample_quality

from .measures import UPSAMPLERS, digit_agreement, label_accuracy, psnr, upsample_classical

#: The extension windows' key is EXTEND_KEY + seed (the first block's is the seed).
EXTEND_KEY = 1000


def data_settings(model) -> dict:
    """The Moving MNIST settings the checkpoint was trained with (`vdm_fast.inputs`, from its
    meta.json "data" record), as the JSON records them."""
    ds = moving_mnist_data(model, 1, num_frames=1, what="the ground-truth clips")
    return {"resolution": ds.resolution, "frameskip": ds.frameskip, "digit_size": ds.digit_size,
            "num_digits": list(ds.num_digits), "speed": list(ds.speed), "motion": ds.motion}


def _truth_set(model, seed: int, videos: int, frames: int):
    """The model's Moving MNIST (`moving_mnist_data`) and the indices of seed's clips."""
    ds = moving_mnist_data(model, (seed + 1) * videos, num_frames=frames, what="the ground-truth clips")
    return ds, np.arange(seed * videos, (seed + 1) * videos)


def truth_clips(model, seed: int, videos: int, frames: int):
    """Real clips [videos, frames, H, W, C] and their digit labels [videos, max_digits] (-1 padded):
    clips seed·videos ... (seed + 1)·videos − 1 of the generation commands' --clip set
    (`vdm_fast.inputs.moving_mnist_data`: the model's settings, held-out MNIST test digits), so
    seeds draw disjoint clips."""
    ds, idx = _truth_set(model, seed, videos, frames)
    labels = [ds.spec(int(i)).labels for i in idx]
    width = max(len(x) for x in labels)
    padded = np.full((videos, width), -1, np.int64)
    for i, x in enumerate(labels):
        padded[i, : len(x)] = x
    return ds.batch(idx), padded


def clip_captions(model, seed: int, videos: int, frames: int) -> list[str]:
    """The captions of the clips `truth_clips(model, seed, videos, frames)` returns (each
    describing its clip's `frames` frames)."""
    ds, idx = _truth_set(model, seed, videos, frames)
    return [ds.caption(int(i)) for i in idx]


def options(steps: int, *, method: str = "reconstruction", w_r: float = 5.0, corrector: bool = False,
            guidance_weight: float = 0.0):
    """The sampler of every model row: ancestral (γ = 0.1) or predictor-corrector, x̂ clipped;
    classifier-free guidance weight w (Eq. 6) for a conditional model given c."""
    return SamplerOptions(steps=steps, gamma=0.1, corrector=corrector, method=method, w_r=w_r,
                          guidance_weight=guidance_weight)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _mean(x) -> float:
    return float(np.mean(x))


def super_resolution(model, seed: int, videos: int, steps: int, w_rs=(1.0, 5.0, 20.0),
                     samplers=("ancestral", "pc"), factor: int = 2, baselines: bool = True):
    """Sec. 3.1 / Eq. 8: real clips area-downsampled by `factor`, upsampled back.

    Rows: classical upsamplers, the unguided model (plain samples: what the model draws without
    the condition), and Eq. 8 at each w_r with each sampler. Measures per row: PSNR against the
    real clip, digit agreement with it and label accuracy (all frames), and consistency: PSNR of
    D(output) against the low-resolution input. baselines=False: the Eq. 8 rows only.
    """
    x, labels = truth_clips(model, seed, videos, model.frames)
    low = downsample_area(x, factor)
    size = data_settings(model)["digit_size"]
    outs, seconds = {}, {}
    if baselines:
        for name in UPSAMPLERS:
            outs[name], seconds[name] = _timed(lambda: upsample_classical(low, factor, name))
        outs["unguided model"], seconds["unguided model"] = _timed(
            lambda: sample(model, seed, batch_size=videos, options=options(steps)))
    for sampler in samplers:
        for w in w_rs:
            name = f"Eq. 8, w_r = {w:g}, {sampler}"
            opts = options(steps, w_r=w, corrector=sampler == "pc")
            outs[name], seconds[name] = _timed(lambda: upsample(model, seed, low, options=opts))
            print(f"  {name}: {seconds[name]:.0f} s", flush=True)
    rows = {}
    for name, out in outs.items():
        rows[name] = {"psnr": _mean(psnr(out, x)), "psnr_per_video": psnr(out, x).tolist(),
                      "digit_agreement": _mean(digit_agreement(out, x, size)),
                      "label_accuracy": _mean(label_accuracy(out, labels, size)),
                      "consistency_psnr": _mean(psnr(downsample_area(out, factor), low)),
                      "seconds": seconds[name]}
    truth = {"label_accuracy": _mean(label_accuracy(x, labels, size)), "digit_agreement": 1.0}
    result = {"factor": factor, "low_size": int(low.shape[2]), "rows": rows, "truth": truth}
    return result, {"condition": low, "truth": x, **outs}


def _temporal_rows(model, seed, x, labels, known, unknown, run, baseline, methods, steps, boundaries):
    size = data_settings(model)["digit_size"]
    outs, seconds = {"baseline": baseline}, {"baseline": 0.0}
    for name, opts in methods(steps):
        outs[name], seconds[name] = _timed(lambda: run(opts))
        print(f"  {name}: {seconds[name]:.0f} s", flush=True)
    rows = {}
    for name, out in outs.items():
        q = digit_sample_quality(out, size)
        row = {"psnr_unknown": _mean(psnr(out, x, unknown)), "psnr_per_video": psnr(out, x, unknown).tolist(),
               "digit_agreement": _mean(digit_agreement(out, x, size, frames=unknown)),
               "label_accuracy": _mean(label_accuracy(out, labels, size, frames=unknown)),
               "carry_over": q["carry_over"], "shift_coherence": q["shift_coherence"],
               "same_digit": q["same_digit"], "recognisable": q["recognisable"], "seconds": seconds[name]}
        if boundaries:
            r = boundary_coherence(out, boundaries, size, jump_tolerance=JUMP_TOLERANCE)
            row.update(junction=r.boundary, within=r.within, junction_jump=r.median_jump_boundary)
        rows[name] = row
    q = digit_sample_quality(x, size)
    truth = {"carry_over": q["carry_over"], "shift_coherence": q["shift_coherence"], "same_digit": q["same_digit"],
             "recognisable": q["recognisable"], "label_accuracy": _mean(label_accuracy(x, labels, size, frames=unknown))}
    return {"known": list(known), "unknown": list(unknown), "rows": rows, "truth": truth}, outs


def conditioning_methods(w_rs=(5.0,), samplers=("ancestral",)):
    """Replacement (w_r = 0) and reconstruction guidance (Eq. 7) at each w_r > 0, with each sampler
    ('ancestral'; 'pc' rows are named with a ", pc" suffix)."""
    def methods(steps):
        for sampler in samplers:
            pc = sampler == "pc"
            suffix = ", pc" if pc else ""
            yield "replacement" + suffix, options(steps, method="replacement", corrector=pc)
            for w in (w for w in w_rs if w > 0):
                yield f"reconstruction, w_r = {w:g}{suffix}", options(steps, w_r=w, corrector=pc)
    return methods


def interpolation(model, seed: int, videos: int, steps: int, w_rs=(5.0,), samplers=("ancestral",)):
    """Every other frame of a real clip known (0, 2, ..., F − 2), the others generated in one block
    of F frames. Frames 1, 3, ..., F − 3 lie between two known frames (scored: `unknown`); the last
    frame, F − 1, has a known frame on one side only (scored apart: `last_frame_psnr`).
    Baseline: the mean of the two neighbouring known frames (the last frame: a copy of F − 2)."""
    f = model.frames
    x, labels = truth_clips(model, seed, videos, f)
    known = tuple(range(0, f, 2))
    inner = tuple(range(1, f - 1, 2))
    cond = np.where(np.isin(np.arange(f), known)[None, :, None, None, None], x, 0.0).astype(np.float32)
    base = cond.copy()
    for t in range(1, f, 2):
        base[:, t] = (x[:, t - 1] + x[:, t + 1]) / 2 if t + 1 < f else x[:, t - 1]

    def run(opts):
        out, _ = run_timeline(model, seed, Timeline(f, videos, cond, known), context_frames=0, options=opts)
        return out

    result, outs = _temporal_rows(model, seed, x, labels, known, inner, run, base, conditioning_methods(w_rs, samplers),
                                  steps, ())
    for name, out in outs.items():
        result["rows"][name]["last_frame_psnr"] = _mean(psnr(out, x, [f - 1]))
    return result, {"condition": cond, "truth": x, **outs}


def prediction(model, seed: int, videos: int, steps: int, given: int = 2, w_rs=(5.0,), samplers=("ancestral",)):
    """The first `given` frames of a real clip known, the other F − given generated (Sec. 4.2).
    Baseline: the last given frame repeated. `junction` is the carry-over of the pair (given − 1,
    given) that straddles known and generated frames; `within` that of all other pairs."""
    f = model.frames
    x, labels = truth_clips(model, seed, videos, f)
    base = np.concatenate([x[:, :given], np.repeat(x[:, given - 1 : given], f - given, axis=1)], axis=1)
    cond = np.concatenate([x[:, :given], np.zeros_like(x[:, given:])], axis=1)
    result, outs = _temporal_rows(model, seed, x, labels, range(given), range(given, f),
                                  lambda opts: predict(model, seed, x, given_frames=given, options=opts),
                                  base, conditioning_methods(w_rs, samplers), steps, (given,))
    return result, {"condition": cond, "truth": x, **outs}


def extension(model, seed: int, videos: int, steps: int, w_r: float = 5.0, blocks: int = 4,
              reference_videos: int = 64):
    """Table 6 / Sec. 4.3.3: the model's own F-frame samples (key seed) extended to blocks·F frames,
    each window conditioned on the last F/2 frames (key `EXTEND_KEY` + seed, the same for both
    methods), by reconstruction guidance and by replacement — the `python cli.py extend --coherence`
    code path (sample, extend, the windows' boundaries, `boundary_coherence`), with the extension
    key moved off seed + 1 so that no seed's windows reuse another seed's draws. Boundary vs
    within-block coherence at τ = 5 px, and the measure on real and spliced clips at the same
    boundaries."""
    f = model.frames
    size = data_settings(model)["digit_size"]
    first, t_first = _timed(lambda: sample(model, seed, batch_size=videos, options=options(steps)))
    rows, outs = {}, {"first block": first}
    for name, opts in ((f"reconstruction, w_r = {w_r:g}", options(steps, w_r=w_r)),
                       ("replacement", options(steps, method="replacement"))):
        (out, windows), sec = _timed(lambda: extend(model, EXTEND_KEY + seed, first, blocks * f, context_frames=f // 2,
                                                   options=opts, return_windows=True))
        print(f"  {name}: {sec:.0f} s", flush=True)
        boundaries = [w.boundary for w in windows if w.boundary is not None]
        report = boundary_coherence(out, boundaries, size, jump_tolerance=JUMP_TOLERANCE)
        q = digit_sample_quality(out, size)
        rows[name] = {**report.as_dict(), "shift_coherence": q["shift_coherence"], "same_digit": q["same_digit"],
                      "recognisable": q["recognisable"], "seconds": sec + t_first, "seconds_first_block": t_first,
                      "boundaries": boundaries}
        outs[name] = out
    s = data_settings(model)
    refs = reference_scores(num_videos=reference_videos, num_frames=blocks * f, boundaries=boundaries,
                            resolution=s["resolution"], digit_size=size, num_digits=tuple(s["num_digits"]),
                            speed=tuple(s["speed"]))
    truth = {k: r.as_dict() for k, r in refs.items()}
    return {"blocks": blocks, "context_frames": f // 2, "w_r": w_r, "rows": rows, "truth": truth}, outs


TASKS = {"sr": super_resolution, "interpolation": interpolation, "prediction": prediction, "extend": extension}
