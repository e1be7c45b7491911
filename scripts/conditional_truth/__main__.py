"""Command line (run from the repository root):

    python -m scripts.conditional_truth run sr interpolation prediction extend --seed 0 --videos 32 --steps 64
    python -m scripts.conditional_truth run cascade --seed 0 --videos 16 --steps 32 [--no-captions]
        (--base checkpoints/mnist-base-16 --text-checkpoint checkpoints/mnist-small-text by default)
    python -m scripts.conditional_truth report --runs /tmp/conditional_runs --assets docs/assets/conditional

`run` writes RUNS/<task>_seed<S>[_<tag>].json (settings, every number, wall time, load average)
and the .npz beside it (the condition, every generated set, the truth); `report` prints the
Markdown tables over seeds (the files of one task and seed merged: a later `--tag pc
--no-baselines` run adds rows) and writes one PNG strip per task from the lowest seed's videos
(and for `cascade` a GIF too: base | cascade | direct side by side).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from vdm_fast.inputs import DEFAULT_BASE_CHECKPOINT

from . import cascade, report, tasks

#: Every task `run` knows: the ground-truth tasks and the cascade (which needs --base).
TASKS = {**tasks.TASKS, "cascade": cascade.cascade_vs_direct}


def _machine() -> str:
    return f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, {platform.system()}".strip()


def run(args, model=None) -> list[Path]:
    """Each task of args for args.seed on `model` (default: the checkpoint args.checkpoint)."""
    from vdm_fast.generation import describe, load_model

    model = load_model(args.checkpoint) if model is None else model
    stages = cascade_stages(args) if "cascade" in args.tasks else {}
    out = Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    kwargs = {"sr": dict(w_rs=tuple(args.w_r), samplers=tuple(args.samplers), baselines=not args.no_baselines),
              "interpolation": dict(w_rs=tuple(args.temporal_w_r), samplers=tuple(args.temporal_samplers)),
              "prediction": dict(w_rs=tuple(args.temporal_w_r), samplers=tuple(args.temporal_samplers)),
              "extend": dict(w_r=args.extend_w_r, reference_videos=args.reference_videos),
              "cascade": dict(w_rs=tuple(args.cascade_w_r), guidance_weight=args.cascade_guidance,
                              captions=not args.no_captions, text_checkpoint=args.text_checkpoint,
                              loop=args.cascade_loop, **stages)}
    for task in args.tasks:
        print(f"{task}, seed {args.seed}: {args.videos} videos, {args.steps} steps", flush=True)
        load_start, t0 = os.getloadavg()[0], time.perf_counter()
        result, videos = TASKS[task](model, args.seed, args.videos, args.steps, **kwargs[task])
        wall = time.perf_counter() - t0
        result.update(task=task, seed=args.seed, tag=args.tag, videos=args.videos, steps=args.steps, checkpoint=args.checkpoint,
                      model=describe(model), data=tasks.data_settings(model), wall_seconds=wall,
                      load_start=load_start, load_end=os.getloadavg()[0], machine=_machine(),
                      date=datetime.date.today().isoformat(),
                      sampler="ancestral γ = 0.1 (pc: + Langevin corrector δ = 0.1), x̂ clipped to [-1, 1], "
                              "marginal replacement")
        if task == "cascade":
            result.update(base_checkpoint=args.base, base_model=describe(stages["base"]),
                          text_checkpoint=args.text_checkpoint,
                          text_model=describe(stages["text_model"]) if stages["text_model"] is not None else None,
                          text_data=tasks.data_settings(stages["text_model"]) if stages["text_model"] is not None
                          else None)
        stem = out / (f"{task}_seed{args.seed}" + (f"_{args.tag}" if args.tag else ""))
        json_path, npz_path = stem.parent / f"{stem.name}.json", stem.parent / f"{stem.name}.npz"  # a dotted tag stays
        json_path.write_text(json.dumps(result, indent=1, default=float))
        np.savez_compressed(npz_path, **{k: np.asarray(v, np.float32) for k, v in videos.items()})
        written.append(json_path)
        print(f"{task}, seed {args.seed}: {wall:.0f} s -> {stem}.json", flush=True)
    return written


def cascade_stages(args) -> dict:
    """The cascade's base (args.base; SystemExit with one line if there is no checkpoint there: the
    task needs it) and the caption-conditioned direct model (args.text_checkpoint; None, said on
    stdout, if there is no checkpoint there or --no-captions), loaded before any task runs."""
    from vdm_fast.generation import load_model

    try:
        base = load_model(args.base)
    except FileNotFoundError as e:
        raise SystemExit(f"error: --base {args.base}: {e}") from None
    text_model = None
    if not args.no_captions:
        try:
            text_model = load_model(args.text_checkpoint)
        except FileNotFoundError:
            print(f"cascade: no text checkpoint at {args.text_checkpoint}: the captions part runs without its "
                  "direct row", flush=True)
    return {"base": base, "text_model": text_model}


def write_report(args) -> str:
    text = report.markdown(args.runs)
    print(text)
    assets = Path(args.assets)
    assets.mkdir(parents=True, exist_ok=True)
    for task, runs in report.load_runs(args.runs).items():
        first = runs[0]
        if not all(Path(p).exists() for p in first["npz"]):
            print(f"{task}: no videos beside the JSON (only the tables can be made): strip skipped")
            continue
        if task == "cascade":
            path, gif = assets / "cascade.png", assets / "cascade.gif"
            report.cascade_strip(first, videos=args.strip_videos).quantize(colors=128).save(path, optimize=True)
            report.cascade_gif(first, gif, videos=args.strip_videos)
            print(f"wrote {path}\nwrote {gif}")
            continue
        marks = first["rows"][next(iter(first["rows"]))].get("boundaries", ()) if task == "extend" else ()
        extend = task == "extend"  # 32 frames a row: smaller frames, one video more
        img = report.task_strip(first["npz"], videos=args.strip_videos + extend, scale=1 if extend else 2,
                                marks=marks, order=report.sr_order if task == "sr" else None)
        path = assets / f"{task}.png"
        img.quantize(colors=128).save(path, optimize=True)  # palette PNG: a third of the size
        print(f"wrote {path}")
    return text


def main(argv=None, model=None):
    """The command line; `model` (a `vdm_fast.generation.Model`) replaces --checkpoint when given."""
    p = argparse.ArgumentParser(prog="python -m scripts.conditional_truth", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run tasks for one seed")
    r.add_argument("tasks", nargs="+", choices=sorted(TASKS))
    r.add_argument("--checkpoint", default="checkpoints/mnist-small-eps")  # the model of docs/results.md's tables
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--videos", type=int, default=32)
    r.add_argument("--steps", type=int, default=64)
    r.add_argument("--w-r", type=float, nargs="+", default=[1.0, 5.0, 20.0], help="Eq. 8 weights (sr)")
    r.add_argument("--samplers", nargs="+", default=["ancestral", "pc"], choices=["ancestral", "pc"])
    r.add_argument("--temporal-w-r", type=float, nargs="+", default=[5.0], help="Eq. 7 weights (interpolation, prediction)")
    r.add_argument("--temporal-samplers", nargs="+", default=["ancestral"], choices=["ancestral", "pc"])
    r.add_argument("--extend-w-r", type=float, default=5.0)
    r.add_argument("--reference-videos", type=int, default=64, help="real clips for the extension reference rows")
    r.add_argument("--base", default=DEFAULT_BASE_CHECKPOINT, help="cascade: the base model (checkpoint or run dir)")
    r.add_argument("--text-checkpoint", default="checkpoints/mnist-small-text",
                   help="cascade: the caption-conditioned model sampling directly in the captions part")
    r.add_argument("--cascade-w-r", type=float, nargs="+", default=[5.0],
                   help="cascade: Eq. 7 + 8 weights of the second stage and of the direct extension")
    r.add_argument("--cascade-guidance", type=float, default=1.0,
                   help="cascade: classifier-free guidance weight w (Eq. 6) with captions (base and text model)")
    r.add_argument("--no-captions", action="store_true", help="cascade: skip the captions part")
    r.add_argument("--cascade-loop", default="auto", choices=["auto", "compiled", "python"],
                   help="cascade: the sampler loop (the same samples; 'python' compiles less: short runs, tests)")
    r.add_argument("--runs", default="/tmp/conditional_runs")
    r.add_argument("--tag", default="", help="file name suffix: rows of a further run of the same task and seed")
    r.add_argument("--no-baselines", action="store_true", help="sr: skip the classical and unguided rows")
    s = sub.add_parser("report", help="tables over seeds and strips")
    s.add_argument("--runs", default="/tmp/conditional_runs")
    s.add_argument("--assets", default="docs/assets/conditional")
    s.add_argument("--strip-videos", type=int, default=2)
    args = p.parse_args(argv)
    return run(args, model) if args.command == "run" else write_report(args)


if __name__ == "__main__":
    main()
