"""The evaluation's results as a plain-text table and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


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


def json_default(x):
    """JSON for NumPy scalars and arrays (the results hold some); str() of anything else."""
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_results(path: str | Path, results: dict) -> Path:
    """The results as indented JSON at `path` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=json_default))
    return path
