"""Markdown tables of the small-scale ablations from docs/assets/ablations/*.json.

    python scripts/ablations/report.py
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "docs/assets/ablations"


def load(table):
    return {p.stem.split("_", 1)[1]: json.loads(p.read_text()) for p in sorted(OUT.glob(f"{table}_*.json"))}


def fvd_cells(r):
    split = (f"{r['fvd_split_mean']:.1f} ± {r['fvd_split_std']:.1f}" if r.get("fvd_splits", 1) > 1 else "-")
    return f"{r['fvd']:.1f}", split


def table(name, first_col, key_fn, sort_key):
    data = load(name)
    if not data:
        return f"({name}: no results)\n"
    lines = [f"| {first_col} | N | FVD (all N) | FVD per half (mean ± std, N/2 each) | real-vs-real FVD (all N) "
             "| IS (I3D) | IS real | extra |", "|---|---|---|---|---|---|---|---|"]
    for key in sorted(data, key=sort_key):
        res = data[key]
        for r in res["runs"]:
            floor = res.get("real_vs_real", {}).get(str(r["length"]), {})
            fvd, split = fvd_cells(r)
            extra = []
            if r.get("coherence"):
                c = r["coherence"]
                extra.append(f"coherence boundary {c['boundary']:.3f} / within {c['within']:.3f}, "
                             f"identity {c['identity_boundary']:.3f} / {c['identity_within']:.3f}, "
                             f"median jump {c['median_jump_boundary']:.2f} / {c['median_jump_within']:.2f} px")
            extra.append(f"{r['sampling_seconds']:.0f} s sampling")
            label = key_fn(key, r)
            lines.append(f"| {label} | {r['num_samples']} | {fvd} | {split} | {floor.get('fvd', float('nan')):.1f} | "
                         f"{r['is']:.3f} | {res['real'][str(r['length'])]['is']:.3f} | {'; '.join(extra)} |")
    return "\n".join(lines) + "\n"


def _seeded(label):
    name, _, seed = label.partition("-s")
    return f"{name} (sampling seed {seed or 0})"


def main():
    print("Table 4\n")
    print(table("table4", "image frames per video", lambda k, r: _seeded(k.replace("joint", "")),
                lambda k: (int(k.replace("joint", "").split("-")[0]), k)))
    print("Table 5\n")
    print(table("table5", "guidance weight w", lambda k, r: _seeded(k[1:]), lambda k: (float(k[1:].split("-")[0]), k)))
    print("Table 6\n")
    print(table("table6", "method", lambda k, r: r["method"] + (f" (w_r = {r['w_r']:g})" if r.get("w_r") else ""),
                lambda k: k))
    for t in ("table4", "table5", "table6"):
        for k, res in load(t).items():
            print(t, k, "sampler:", {x: res["sampler"].get(x) for x in ("steps", "gamma", "clip_x", "w_r")},
                  "| I3D input:", res["runs"][0]["i3d_input"], "| clipped", res["runs"][0].get("clipped_fraction"))


if __name__ == "__main__":
    main()
