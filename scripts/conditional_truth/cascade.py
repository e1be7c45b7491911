"""The Fig. 2 cascade measured against sampling the 32x32 model directly (issue 17).

A base model (the shipped `checkpoints/mnist-base-16`: 8 frames of 16x16 at frameskip 2) samples
a low-resolution video `low` [B, T, h, w, C]; the unconditional second stage (`mnist-small`,
32x32, frameskip 1) upsamples it in space (k = H / h) and fills it in time (s = the ratio of the
frameskips) by reconstruction guidance, Eq. 7 + 8 (`vdm_fast.generation.cascade`), giving
(T − 1)·s + 1 frames (15). Against it: the second stage sampling as many frames itself ("direct":
block-autoregressive extension, Eq. 7 at the same w_r) and real clips of its data.

Part 1, unconditional (the base given no condition, i.e. the null c = 0 it was trained on):
`digit_sample_quality` of each set (shift coherence, carry-over, recognisable, same digit), the
cascade's consistency PSNR of D(high)[:, ::s] against `low` (Eq. 8's condition honoured; D =
`downsample_area`), and wall seconds per video of each stage.

Part 2, captions: the captions of the real clips condition the base (the second stage stays
unconditional) and, for comparison, a caption-conditioned 32x32 model sampling the same number of
frames directly (`mnist-small-text`, trained on 8-frame captions; the 15-frame captions describe
twice the time), both at guidance weight w (Eq. 6); the real clips scored with their own captions
(ceiling) and with the captions shuffled among them (floor): `caption_fidelity.score_captions`
(fidelity, digit and motion rates). A part that cannot run (no text checkpoint, a base that does
not take captions, --no-captions) is named in the result's `caption_notes`.

Every model row uses the seed as its key (the cascade: fold_in(key, 0) for the base,
fold_in(key, 1) for the second stage), so the rows of one w_r differ in the method only. Wall
times include each sampler's compilation on its first use in the process.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vdm_fast.generation import cascade, sample
from vdm_fast.generation.commands import cascade_geometry
from vdm_fast.inputs import ConditionEncoder
from vdm_ref.guidance import downsample_area
from vdm_ref.support.eval import load_digit_classifier
from vdm_ref.support.eval.caption_fidelity import score_captions, shuffled
from vdm_ref.support.eval.sample_quality import digit_sample_quality

from .measures import psnr
from .tasks import _timed, clip_captions, data_settings, truth_clips
from .tasks import options as row_options

#: The numbers of `digit_sample_quality` kept in a row.
QUALITY = ("shift_coherence", "carry_over", "recognisable", "same_digit", "empty_frames")


def quality(videos, digit_size: int, classifier) -> dict:
    """`digit_sample_quality` of videos [B, T, H, W, C]: the `QUALITY` numbers."""
    q = digit_sample_quality(videos, digit_size, classifier=classifier)
    return {k: float(q[k]) for k in QUALITY}


def fidelity(videos, captions, digit_size: int, classifier) -> dict:
    """`score_captions(...).as_dict()`: fidelity, digit and motion rates (means over the scored
    videos) with their standard errors, and the counts of videos and clauses."""
    return score_captions(videos, captions, digit_size, classifier=classifier).as_dict()


def consistency(high, low, factor: int, frameskip: int) -> np.ndarray:
    """PSNR per video of D(high)[:, ::s] against low (Eq. 8's condition): high [B, (T − 1)s + 1,
    H, W, C], low [B, T, H / k, W / k, C], D the k x k area mean (`downsample_area`)."""
    return psnr(np.asarray(downsample_area(np.asarray(high, np.float32), factor))[:, ::frameskip], low)


def stage_seconds(seconds: dict, videos: int) -> dict:
    """A cascade's wall times (`CascadeResult.seconds`): total, per video, per video per stage."""
    total = seconds["base"] + seconds["second_stage"]
    return {"seconds": total, "seconds_per_video": total / videos,
            "base_seconds_per_video": seconds["base"] / videos,
            "second_stage_seconds_per_video": seconds["second_stage"] / videos}


def caption_notes(base, text_model, text_checkpoint: str, captions: bool) -> list[str]:
    """Why part 2, or a row of it, cannot run (empty when all of it can)."""
    if not captions:
        return ["captions part skipped (--no-captions)"]
    notes = []
    if base.unet.conditioning != "text":
        notes.append(f"the base takes no captions (conditioning {base.unet.conditioning!r}): no cascade row "
                     "with captions")
    if text_model is None:
        notes.append(f"no text checkpoint at {text_checkpoint}: no direct row with captions")
    elif text_model.unet.conditioning != "text":
        notes.append(f"{text_checkpoint} takes no captions (conditioning {text_model.unet.conditioning!r}): "
                     "no direct row with captions")
    return notes


def cascade_vs_direct(model, seed: int, videos: int, steps: int, *, base, text_model=None, w_rs=(5.0,),
                      guidance_weight: float = 1.0, captions: bool = True, text_checkpoint: str = "",
                      loop: str = "auto"):
    """The two parts of the module docstring for one seed.

    **Arguments:** `model`: the unconditional second stage (and the direct sampler of part 1);
    `base`: the base model; `text_model`: the caption-conditioned model sampling directly in part 2
    (None: that row is left out); `w_rs`: Eq. 7 + 8 weights (one cascade and one direct row
    each); `guidance_weight`: w of Eq. 6 for the caption-conditioned sampling; `captions`: run
    part 2; `text_checkpoint`: its path, for the notes; `loop`: `SamplerOptions.loop` of every
    model row ('python' draws the same samples and compiles in a fraction of the time: short runs).

    **Returns:** (result: JSON-able, with "rows" (part 1), "caption_rows" (part 2, when any of it
    ran), "caption_notes", the geometry and the captions; videos: {"base", "cascade, w_r = …",
    "direct, w_r = …", "real", and part 2's "base, captions", "cascade with captions, w_r = …",
    "direct with captions, w_r = …"}).
    """
    factor, skip = cascade_geometry(base, model, None)
    frames = (base.frames - 1) * skip + 1
    size = data_settings(model)["digit_size"]
    clf = load_digit_classifier()
    real, _ = truth_clips(model, seed, videos, frames)

    def options(**kw):
        return dataclasses.replace(row_options(steps, **kw), loop=loop)

    rows, outs = {}, {}
    for w in w_rs:
        r = cascade(base, model, seed, batch_size=videos, frameskip=skip, low_options=options(),
                    high_options=options(w_r=w))
        direct, sec = _timed(lambda: sample(model, seed, batch_size=videos, length=frames,
                                            options=options(w_r=w)))
        print(f"  cascade, w_r = {w:g}: base {r.seconds['base']:.0f} s + second stage "
              f"{r.seconds['second_stage']:.0f} s; direct: {sec:.0f} s", flush=True)
        c = consistency(r.high, r.low, factor, skip)
        rows[f"cascade, w_r = {w:g}"] = {**quality(r.high, size, clf), "consistency_psnr": float(np.mean(c)),
                                         "consistency_psnr_per_video": c.tolist(),
                                         **stage_seconds(r.seconds, videos)}
        rows[f"direct, w_r = {w:g}"] = {**quality(direct, size, clf), "seconds": sec,
                                        "seconds_per_video": sec / videos}
        outs.setdefault("base", r.low)
        outs[f"cascade, w_r = {w:g}"], outs[f"direct, w_r = {w:g}"] = r.high, direct
    rows["real clips"] = quality(real, size, clf)
    outs["real"] = real
    result = {"factor": factor, "frameskip": skip, "frames": frames, "base_frames": base.frames,
              "low_size": base.image_size, "size": model.image_size, "w_rs": list(w_rs), "rows": rows,
              "loop": loop, "caption_notes": caption_notes(base, text_model, text_checkpoint, captions)}
    for note in result["caption_notes"]:
        print(f"  cascade: {note}", flush=True)
    if captions:
        caps = clip_captions(model, seed, videos, frames)
        cap_rows, cap_outs = caption_part(model, seed, videos, options, base, text_model, w_rs, guidance_weight,
                                          real, caps, factor, skip, size, clf)
        result.update(caption_rows=cap_rows, captions=caps, guidance_weight=guidance_weight)
        outs.update(cap_outs)
    return result, outs


def caption_part(model, seed, videos, options, base, text_model, w_rs, w, real, caps, factor, skip, size, clf):
    """Part 2's rows and videos (module docstring): the captions `caps` of the real clips `real`;
    `options(**kw)` the sampler options of a row."""
    frames = real.shape[1]
    rows, outs = {}, {}
    cond_options = options(guidance_weight=w)
    for w_r in w_rs:
        if base.unet.conditioning == "text":
            r = cascade(base, model, seed, batch_size=videos, frameskip=skip,
                        low_cond=ConditionEncoder(base.unet).captions(caps), low_options=cond_options,
                        high_options=options(w_r=w_r))
            c = consistency(r.high, r.low, factor, skip)
            rows[f"cascade, w_r = {w_r:g}"] = {**fidelity(r.high, caps, size, clf),
                                               "consistency_psnr": float(np.mean(c)), **stage_seconds(r.seconds, videos)}
            outs.setdefault("base, captions", r.low)
            outs[f"cascade with captions, w_r = {w_r:g}"] = r.high
            print(f"  cascade with captions, w_r = {w_r:g}: {rows[f'cascade, w_r = {w_r:g}']['seconds']:.0f} s",
                  flush=True)
        if text_model is not None and text_model.unet.conditioning == "text":
            cond = ConditionEncoder(text_model.unet).captions(caps)
            direct, sec = _timed(lambda: sample(text_model, seed, batch_size=videos, length=frames, cond=cond,
                                                options=options(w_r=w_r, guidance_weight=w)))
            rows[f"direct (text model), w_r = {w_r:g}"] = {**fidelity(direct, caps, size, clf), "seconds": sec,
                                                           "seconds_per_video": sec / videos}
            outs[f"direct with captions, w_r = {w_r:g}"] = direct
            print(f"  direct with captions, w_r = {w_r:g}: {sec:.0f} s", flush=True)
    rows["real clips, own captions"] = fidelity(real, caps, size, clf)
    rows["real clips, shuffled captions"] = fidelity(real, shuffled(caps, seed), size, clf)
    return rows, outs
