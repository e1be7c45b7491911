"""Evaluate the small-scale ablations of docs/results.md (Tables 4-6 of the paper, re-run tiny).

    python scripts/ablations/evaluate_all.py table4 [--num-samples 32]
    python scripts/ablations/evaluate_all.py table5
    python scripts/ablations/evaluate_all.py table6 [--checkpoint runs/ablations/joint4]

Each evaluation goes through `vdm_fast.evaluation.evaluate` (the `python cli.py evaluate` code path)
with the real I3D; I3D logits are cached on disk by the SHA-1 of the video array, so the real
sets are embedded once across runs. Results: docs/assets/ablations/<table>_<run>.json and
frame grids in docs/assets/ablations/<table>_<run>/ (tables: report.py). A real-vs-real FVD (the same data
distribution, another seed) is measured for each length as the floor at this N.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from vdm_fast import evaluation as E  # noqa: E402

OUT = ROOT / "docs/assets/ablations"
CACHE = ROOT / "runs/ablations/i3d_cache"


def cached_embed(resize="antialias", batch_size=8):
    from vdm_fast.metrics import i3d_embeddings, load_i3d

    net = load_i3d()

    def embed(videos):
        v = np.ascontiguousarray(videos, np.float32)
        key = hashlib.sha1(v.tobytes() + repr((v.shape, resize)).encode()).hexdigest()
        path = CACHE / f"{key}.npy"
        if path.exists():
            return np.load(path)
        t = time.perf_counter()
        logits = np.asarray(i3d_embeddings(v, model=net, batch_size=batch_size, resize=resize).logits)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, logits)
        print(f"  I3D: {v.shape[0]} clips of {v.shape[1]} frames in {time.perf_counter() - t:.0f} s", flush=True)
        return logits

    return embed


def real_floor(model, embed, n, length, seed_a, seed_b, splits):
    """FVD between two independent real sets of N clips (the same distribution): the floor at N."""
    a, _, _ = E.reference_clips(model, n, length, seed=seed_a)
    b, _, _ = E.reference_clips(model, n, length, seed=seed_b)
    xa, _ = E.i3d_input(a)
    xb, _ = E.i3d_input(b)
    return E.fvd_with_spread(embed(xa), embed(xb), splits)


def run(table, name, checkpoint, settings, embed, floor=True):
    from vdm_fast.generation import load_model

    model = load_model(ROOT / checkpoint)
    print(f"== {table} / {name}: {checkpoint} step {model.meta.get('step')} ({time.strftime('%H:%M:%S')})", flush=True)
    res = E.evaluate(model, settings, embed=embed, progress=False, save_videos=OUT / f"{table}_{name}")
    res["feature_network"] = "I3D Kinetics-400 logits (vdm_fast.metrics), cached by video hash"
    res["checkpoint"] = str(checkpoint)
    if floor:
        res["real_vs_real"] = {str(p.length): real_floor(model, embed, settings.num_samples, p.length,
                                                         settings.data_seed, settings.data_seed + 1,
                                                         settings.fvd_splits)
                               for p in settings.check(model.frames)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{table}_{name}.json").write_text(json.dumps(res, indent=1, default=E.json_default))
    print(E.format_table(res), flush=True)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=["table4", "table5", "table6"])
    p.add_argument("--num-samples", type=int, default=32)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--fvd-splits", type=int, default=2)
    p.add_argument("--checkpoint", default="runs/ablations/joint4", help="table6: the model to extend")
    p.add_argument("--runs", nargs="*", default=None, help="table4: run names; table5: guidance weights")
    p.add_argument("--w-r", type=float, default=5.0)
    p.add_argument("--no-floor", action="store_true")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (results named <run>-s<seed> unless 0)")
    a = p.parse_args(argv)
    embed = cached_embed()
    base = E.EvalSettings(num_samples=a.num_samples, steps=a.steps, fvd_splits=a.fvd_splits, batch_size=16,
                          seed=a.seed, w_r=a.w_r)
    sfx = f"-s{a.seed}" if a.seed else ""
    if a.table == "table4":
        for name in a.runs or ["joint0", "joint4", "joint8"]:
            run("table4", name + sfx, f"runs/ablations/{name}", dataclasses.replace(base, protocols=("unconditional",)),
                embed, floor=not a.no_floor)
    elif a.table == "table5":
        for w in a.runs or ["0", "1", "2", "5"]:
            run("table5", f"w{w}{sfx}", "runs/ablations/text",
                dataclasses.replace(base, protocols=("unconditional",), guidance_weight=float(w)), embed,
                floor=not a.no_floor)
    else:
        run("table6", Path(a.checkpoint).name, a.checkpoint,
            dataclasses.replace(base, protocols=("extend",), methods=("reconstruction", "replacement"),
                                extend_factor=4), embed, floor=not a.no_floor)


if __name__ == "__main__":
    main()
