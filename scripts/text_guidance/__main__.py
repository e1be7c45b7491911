"""Command line (run from the repository root):

    python -m scripts.text_guidance run [--checkpoint checkpoints/mnist-small-text] [--weights 0 1 2 5]
        [--seeds 0 1] [--videos 64] [--batch-size 16] [--steps 32] [--no-fvd] [--out-dir DIR]
    python -m scripts.text_guidance report [--out-dir DIR]

`run` writes DIR/seed<S>.json (every w row of that seed, the real clips' ceiling, floor and
diversity, settings, wall time, load average; rewritten after each row) and DIR/seed<S>_w<w>.png
(the first `STRIP_VIDEOS` generated videos, one per line; their captions in the JSON), and
DIR/real.png (the first real clips). It only overwrites files it wrote itself. `report` prints
the Markdown table from the JSON files alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from . import measure, report

DEFAULT_OUT = "docs/assets/text_guidance"
#: Generated videos shown in each PNG strip (and whose captions the JSON lists beside it).
STRIP_VIDEOS = 4
SCRIPT = report.SCRIPT


def _machine() -> str:
    return f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, {platform.system()}".strip()


def finite_json(x):
    """x with every NaN or infinite float replaced by None (strict JSON has no NaN), NumPy
    scalars and arrays as Python numbers and lists."""
    if isinstance(x, dict):
        return {k: finite_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [finite_json(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def check_args(args) -> None:
    """Raise UsageError (one line) naming the first bad flag, before anything is loaded."""
    from vdm_fast.inputs import UsageError, check_flags, usage_errors
    from vdm_ref.support.eval.caption_fidelity import parse_caption

    for w in args.weights:
        if not (math.isfinite(w) and w >= 0):
            raise UsageError(f"--weights {w:g}: expected guidance weights w >= 0 (Eq. 6: w = 0 is the plain "
                             "conditional model)")
    if len(set(args.weights)) != len(args.weights):
        raise UsageError(f"--weights {' '.join(f'{w:g}' for w in args.weights)}: a weight is repeated")
    if len(set(args.seeds)) != len(args.seeds):
        raise UsageError(f"--seeds {' '.join(map(str, args.seeds))}: a seed is repeated")
    with usage_errors():
        for s in args.seeds:
            check_flags({"seed": s}, minimums={"seed": 0})
        check_flags({"videos": args.videos, "batch_size": args.batch_size, "steps": args.steps,
                     "data_seed": args.data_seed, "diversity_videos": args.diversity_videos,
                     "diversity_search": args.diversity_search},
                    minimums={"videos": 2, "batch_size": 1, "steps": 2, "data_seed": 0, "diversity_videos": 2,
                              "diversity_search": 1})
    clauses = parse_caption(args.diversity_caption)
    bad = [c for c in clauses if not c.parsed]
    if not clauses or bad:
        why = bad[0].reason if bad else "it is empty"
        raise UsageError(f"--diversity-caption {args.diversity_caption!r}: caption fidelity cannot score it ({why})")
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out-dir {out}: is a file; expected a folder")

    def written_by_us(path):
        try:
            return json.loads(path.read_text()).get("script") == SCRIPT
        except (OSError, ValueError, AttributeError):
            return False

    for s in args.seeds:
        path = out / f"seed{s}.json"
        if path.exists() and not written_by_us(path):
            raise UsageError(f"--out-dir {out}: {path.name} exists and was not written by {SCRIPT}; "
                             "choose another --out-dir")
    # an image is ours when a JSON of ours names it: real.png any of them, seed<S>_w<w>.png seed<S>.json
    ours_any = out.is_dir() and any(written_by_us(p) for p in out.glob("seed*.json"))
    images = [(out / "real.png", ours_any)] + [
        (out / f"seed{s}_w{w:g}.png", (out / f"seed{s}.json").exists()) for s in args.seeds for w in args.weights]
    for path, ours in images:
        if path.exists() and not ours:
            raise UsageError(f"--out-dir {out}: {path.name} exists and was not written by {SCRIPT}; "
                             "choose another --out-dir")


def _open_text_model(path: str):
    from vdm_fast.generation import open_model
    from vdm_fast.inputs import UsageError, usage_errors

    with usage_errors():
        model = open_model(path)
    if model.unet.conditioning != "text":
        raise UsageError(f"--checkpoint {path}: the model has conditioning {model.unet.conditioning!r}; "
                         "classifier-free guidance on captions needs a text-conditioned model (e.g. mnist-small-text)")
    return model


def _real_reference(model, args, digit_size, clf, embed):
    """The real clips (N, their captions), their fidelity ceiling and floor, real-vs-real FVD and
    logits, and the real diversity of --diversity-caption (or why there is none)."""
    from vdm_fast.evaluation import reference_clips
    from vdm_fast.inputs import moving_mnist_data
    from vdm_ref.support.eval.caption_fidelity import shuffled

    real, _, captions = reference_clips(model, args.videos, model.frames, seed=args.data_seed)
    ref = {"ceiling": measure.fidelity(real, captions, digit_size, clf),
           "floor": measure.fidelity(real, shuffled(list(captions), args.data_seed), digit_size, clf),
           "floor_shuffle_seed": args.data_seed}
    ds = moving_mnist_data(model, args.diversity_search, num_frames=model.frames, seed=args.data_seed,
                           what="the real diversity clips")
    idx = measure.caption_clips(ds, args.diversity_caption, args.diversity_videos, args.diversity_search)
    if len(idx) >= 2:
        ref["diversity"] = measure.diversity(ds.batch(np.asarray(idx)), args.diversity_caption, digit_size, clf)
        ref["diversity"]["clip_indices"] = idx
    if len(idx) < args.diversity_videos:
        ref["diversity_note"] = (f"{len(idx)} of the first {args.diversity_search} test-split clips (data seed "
                                 f"{args.data_seed}) have the caption {args.diversity_caption!r}; "
                                 f"{args.diversity_videos} asked for" + ("" if len(idx) >= 2 else ": no real diversity"))
    real_logits = None
    if embed is not None:
        real_logits, note = measure.i3d_logits(embed, real)
        other, _, _ = reference_clips(model, args.videos, model.frames, seed=args.data_seed + 1)
        ref["fvd_real_vs_real"] = measure.fvd(real_logits, measure.i3d_logits(embed, other)[0])
        ref["fvd_real_vs_real"]["other_data_seed"] = args.data_seed + 1
        ref["i3d_input"] = note
    return real, list(captions), ref, real_logits


def run(args) -> list[Path]:
    """Every --weights row for every --seeds seed (module docstring); returns the JSON paths."""
    import jax

    from vdm_fast.generation import SamplerOptions, describe
    from vdm_fast.inputs import ConditionEncoder, UsageError, check_writable, moving_mnist_settings, usage_errors
    from vdm_ref.support.data import write_frame_grid
    from vdm_ref.support.eval import load_digit_classifier

    check_args(args)
    model = _open_text_model(args.checkpoint)
    out = Path(args.out_dir)
    with usage_errors():
        check_writable(out / f"seed{args.seeds[0]}.json", "--out-dir")
    embed = None
    if not args.no_fvd:
        from vdm_ref.support.i3d_weights import I3DWeightsError

        try:
            embed = measure.cached_embed(args.i3d_cache)
        except I3DWeightsError as e:
            raise UsageError(f"FVD needs the I3D weights ({e}); pass --no-fvd to skip FVD") from e
    settings = moving_mnist_settings(model)
    digit_size = int(settings["digit_size"])
    clf = load_digit_classifier()
    load_start, t_start = os.getloadavg()[0], time.perf_counter()
    print(f"{describe(model)}: real clips, caption fidelity ceiling and floor"
          + ("" if embed is None else ", I3D"), flush=True)
    real, captions, ref, real_logits = _real_reference(model, args, digit_size, clf, embed)
    encoder = ConditionEncoder(model.unet)
    tokens, mask = encoder.captions(captions + [args.diversity_caption])  # one encoder call, one compile
    cond = (tokens[: args.videos], mask[: args.videos])
    div_cond = (np.repeat(tokens[-1:], args.diversity_videos, 0), np.repeat(mask[-1:], args.diversity_videos, 0))
    out.mkdir(parents=True, exist_ok=True)
    write_frame_grid(out / "real.png", real[:STRIP_VIDEOS])
    ref.update(strip="real.png", strip_captions=captions[:STRIP_VIDEOS])
    written = []
    for seed in args.seeds:
        result = {"script": SCRIPT, "seed": seed, "checkpoint": args.checkpoint, "model": describe(model),
                  "step": model.meta.get("step"), "videos": args.videos, "batch_size": args.batch_size,
                  "steps": args.steps, "data": {**{k: list(v) if isinstance(v, tuple) else v
                                                   for k, v in settings.items()}, "data_seed": args.data_seed,
                                                "split": "test"},
                  "diversity_caption": args.diversity_caption, "diversity_videos": args.diversity_videos,
                  "fvd": embed is not None, "real": ref, "rows": {}, "complete": False}
        path = out / f"seed{seed}.json"
        for w in args.weights:
            with usage_errors(ValueError):
                options = SamplerOptions.from_config(model.config.diffusion, steps=args.steps, guidance_weight=w)
            result["sampler"] = {k: v for k, v in dataclasses.asdict(options).items() if k != "guidance_weight"}
            key = jax.random.key(seed)
            videos, secs = measure.generate(model, cond, options, key, batch_size=args.batch_size)
            row = {"w": w, **measure.fidelity(videos, captions, digit_size, clf),
                   "seconds": sum(secs), "batch_seconds": secs,
                   "seconds_per_video_warm": float(np.mean(secs[1:]) / args.batch_size) if len(secs) > 1 else None}
            if embed is not None:
                row.update(measure.fvd(real_logits, measure.i3d_logits(embed, videos)[0]))
            div, div_secs = measure.generate(model, div_cond, options,
                                             jax.random.fold_in(key, measure.DIVERSITY_STREAM),
                                             batch_size=args.batch_size)
            row["diversity"] = {**measure.diversity(div, args.diversity_caption, digit_size, clf),
                                "seconds": sum(div_secs)}
            strip = f"seed{seed}_w{w:g}.png"
            write_frame_grid(out / strip, videos[:STRIP_VIDEOS])
            row.update(strip=strip, strip_captions=captions[:STRIP_VIDEOS])
            result["rows"][f"w = {w:g}"] = row
            result.update(wall_seconds=time.perf_counter() - t_start, load_start=load_start,
                          load_end=os.getloadavg()[0], machine=_machine(), date=datetime.date.today().isoformat())
            path.write_text(json.dumps(finite_json(result), indent=1))
            print(f"seed {seed}, w = {w:g}: fidelity {row['fidelity']:.3f}, digit {row['digit']:.3f}, motion "
                  f"{row['motion']:.3f}" + (f", FVD {row['fvd']:.1f}" if "fvd" in row else "")
                  + f", diversity {row['diversity']['rms']:.3f}; {row['seconds']:.0f} s", flush=True)
        result["complete"] = True
        path.write_text(json.dumps(finite_json(result), indent=1))
        written.append(path)
    return written


def main(argv=None):
    """The command line: `run` (measure) or `report` (the Markdown table)."""
    p = argparse.ArgumentParser(prog="python -m scripts.text_guidance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="generate and measure for every weight and seed")
    r.add_argument("--checkpoint", default="checkpoints/mnist-small-text")
    r.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 2.0, 5.0], help="guidance weights w (Eq. 6)")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="sampling seeds (one JSON each)")
    r.add_argument("--videos", type=int, default=64, help="N: real clips, one generated video per caption")
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--steps", type=int, default=32)
    r.add_argument("--data-seed", type=int, default=1234, help="seed of the real test-split clips (as evaluate)")
    r.add_argument("--diversity-caption", default="digit 7 is moving right")
    r.add_argument("--diversity-videos", type=int, default=16, help="K videos of the diversity caption")
    r.add_argument("--diversity-search", type=int, default=20000,
                   help="real clips searched for the diversity caption")
    r.add_argument("--no-fvd", action="store_true", help="skip FVD (I3D)")
    r.add_argument("--i3d-cache", default="runs/text_guidance/i3d_cache", help="I3D logits cached by video hash")
    r.add_argument("--out-dir", default=DEFAULT_OUT)
    s = sub.add_parser("report", help="the Markdown table over seeds")
    s.add_argument("--out-dir", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if args.command == "run":
        return run(args)
    text = report.markdown(args.out_dir)
    print(text)
    return text


if __name__ == "__main__":
    main()
