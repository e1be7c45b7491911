"""Tables over seeds and image strips from the runs' JSON and NPZ files.

A table cell is the mean over seeds of the per-seed mean over videos, ± half the range of the
per-seed means (with two seeds: half their difference). Strips show, for the first videos of the
lowest seed, one row per method between the condition and the truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# --- tables -------------------------------------------------------------------------------------


def load_runs(folder) -> dict[str, list[dict]]:
    """{task: [result per seed, ...] sorted by seed} from folder/*.json.

    Files of one task and seed are merged (untagged first): rows (and the cascade's caption rows
    and notes) and videos ("npz": the list of .npz files) are joined, wall seconds added, the load
    range widened.
    """
    merged: dict[tuple, dict] = {}
    files = sorted(Path(folder).glob("*.json"), key=lambda p: (json.loads(p.read_text()).get("tag", ""), p.name))
    for p in files:
        r = json.loads(p.read_text())
        r["npz"] = [str(p.with_suffix(".npz"))]
        key = (r["task"], r["seed"])
        if key not in merged:
            merged[key] = r
            continue
        m = merged[key]
        for part in ("rows", "caption_rows"):
            m.setdefault(part, {}).update(r.get(part, {}))
        m["caption_notes"] = m.get("caption_notes", []) + r.get("caption_notes", [])
        m["npz"] += r["npz"]
        m["wall_seconds"] += r["wall_seconds"]
        m["load_start"], m["load_end"] = min(m["load_start"], r["load_start"]), max(m["load_end"], r["load_end"])
    runs: dict[str, list[dict]] = {}
    for (task, _), r in sorted(merged.items(), key=lambda kv: kv[0][1]):
        runs.setdefault(task, []).append(r)
    return runs


def spread(values, digits: int = 2) -> str:
    """'mean ± half-range' of per-seed values (just the value for one seed)."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {(v.max() - v.min()) / 2:.{digits}f}"


def table(runs: list[dict], columns, where: str = "rows", truth_row: str | None = None) -> str:
    """A Markdown table: one line per row name (in the first run's order), `columns` =
    [(header, key, digits)], each cell `spread` over the runs; a real-clip line from 'truth'."""
    heads = [h for h, _, _ in columns]
    lines = ["| " + " | ".join(["method", *heads, "seconds (per seed)"]) + " |",
             "|---|" + "---:|" * (len(heads) + 1)]
    if truth_row is not None:
        cells = [spread([r["truth"].get(k) for r in runs], d) if k in runs[0]["truth"] else "–" for _, k, d in columns]
        lines.append("| " + " | ".join([truth_row, *cells, "–"]) + " |")
    for name in runs[0][where]:
        got = [r[where][name] for r in runs if name in r[where]]
        cells = [spread([g.get(k) for g in got], d) for _, k, d in columns]
        secs = " / ".join(f"{g['seconds']:.0f}" for g in got) if "seconds" in got[0] else "–"
        lines.append("| " + " | ".join([name, *cells, secs]) + " |")
    return "\n".join(lines)


def summary(runs: list[dict]) -> str:
    """One line: videos per seed, seeds, steps, wall time per seed (all of the seed's files), and the
    range of the load average read at their starts and ends."""
    r0 = runs[0]
    walls = ", ".join(f"seed {r['seed']}: {r['wall_seconds'] / 60:.1f} min (1-min load average "
                      f"{min(r['load_start'], r['load_end']):.1f}–{max(r['load_start'], r['load_end']):.1f} "
                      "at the runs' starts and ends)" for r in runs)
    return (f"N = {r0['videos']} videos per seed, seeds {[r['seed'] for r in runs]}, {r0['steps']} sampling steps; "
            f"wall time {walls}")


SR_COLUMNS = [("PSNR vs real clip (dB)", "psnr", 2), ("digit agreement", "digit_agreement", 3),
              ("label accuracy", "label_accuracy", 3), ("consistency PSNR (dB)", "consistency_psnr", 2)]
TEMPORAL_COLUMNS = [("PSNR unknown frames (dB)", "psnr_unknown", 2), ("digit agreement", "digit_agreement", 3),
                    ("label accuracy", "label_accuracy", 3), ("carry-over", "carry_over", 3),
                    ("same digit", "same_digit", 3)]
EXTEND_COLUMNS = [("boundary coherence", "boundary", 3), ("within-block", "within", 3),
                  ("identity kept (boundary)", "identity_boundary", 3), ("identity kept (within)", "identity_within", 3),
                  ("median jump boundary (px)", "median_jump_boundary", 2),
                  ("median jump within (px)", "median_jump_within", 2)]


SAMPLE_QUALITY_COLUMNS = [("shift coherence", "shift_coherence", 3), ("carry-over", "carry_over", 3),
                          ("recognisable", "recognisable", 3), ("same digit", "same_digit", 3)]
SECONDS_COLUMNS = [("s / video, base", "base_seconds_per_video", 2),
                   ("s / video, 2nd stage or direct", "second_stage_seconds_per_video", 2),
                   ("s / video, total", "seconds_per_video", 2)]
CASCADE_COLUMNS = SAMPLE_QUALITY_COLUMNS + [("consistency PSNR (dB)", "consistency_psnr", 2)] + SECONDS_COLUMNS
CAPTION_COLUMNS = [("caption fidelity", "fidelity", 3), ("digit rate", "digit", 3), ("motion rate", "motion", 3),
                   ("consistency PSNR (dB)", "consistency_psnr", 2)] + SECONDS_COLUMNS


def cascade_section(runs: list[dict]) -> list[str]:
    """The cascade task's lines: part 1's table, part 2's (the seeds that ran it) and its notes.
    A direct row's total time stands in the "2nd stage or direct" column as well."""
    for r in runs:
        for part in ("rows", "caption_rows"):
            for row in r.get(part, {}).values():
                if "seconds_per_video" in row and "second_stage_seconds_per_video" not in row:
                    row["second_stage_seconds_per_video"] = row["seconds_per_video"]
    r0 = runs[0]
    geometry = (f"{r0['low_size']}x{r0['low_size']} base ({r0['base_frames']} frames) -> x{r0['factor']} in space, "
                f"x{r0['frameskip']} in time -> {r0['frames']} frames of {r0['size']}x{r0['size']}")
    out = [f"### Fig. 2 cascade vs sampling the {r0['size']}x{r0['size']} model directly, unconditional", "",
           f"{geometry}; base: {r0.get('base_model', '?')}", "", table(runs, CASCADE_COLUMNS), ""]
    with_captions = [r for r in runs if r.get("caption_rows")]
    if with_captions:
        w = with_captions[0].get("guidance_weight")
        out += [f"### Fig. 2 cascade with captions (the base conditioned, w = {w:g}) vs the text model directly", "",
                f"direct: {with_captions[0].get('text_model') or 'none'}; real clips scored with their own captions "
                "(ceiling) and shuffled ones (floor)", "", table(with_captions, CAPTION_COLUMNS, "caption_rows"), ""]
    notes = sorted({f"seed {r['seed']}: {n}" for r in runs for n in r.get("caption_notes", [])})
    if notes:
        out += ["Not run: " + "; ".join(notes) + ".", ""]
    return out + [summary(runs), ""]


def sr_order(name: str):
    """Baselines first (as run), then the Eq. 8 rows by sampler and w_r: 'Eq. 8, w_r = 5, pc'."""
    if not name.startswith("Eq. 8"):
        return (0, "", 0.0)
    _, w, sampler = name.split(", ")
    return (1, sampler, float(w.split("=")[1]))


def markdown(folder) -> str:
    """Every task's table, with the run summary line under it."""
    runs = load_runs(folder)
    out = []
    for r in runs.get("sr", []):
        r["rows"] = dict(sorted(r["rows"].items(), key=lambda kv: sr_order(kv[0])))
    if "sr" in runs:
        out += ["### Spatial super-resolution (Eq. 8)", "", table(runs["sr"], SR_COLUMNS, truth_row="real 32x32 clip"),
                "", summary(runs["sr"]), ""]
    if "interpolation" in runs:
        cols = TEMPORAL_COLUMNS + [("PSNR last frame (dB)", "last_frame_psnr", 2)]
        out += ["### Interpolation (every other frame known)", "",
                table(runs["interpolation"], cols, truth_row="real clip"), "", summary(runs["interpolation"]), ""]
    if "prediction" in runs:
        cols = TEMPORAL_COLUMNS + [("carry-over at the junction", "junction", 3)]
        out += ["### Prediction (first 2 frames known)", "", table(runs["prediction"], cols, truth_row="real clip"),
                "", summary(runs["prediction"]), ""]
    if "extend" in runs:
        ext = runs["extend"]
        for r in ext:  # the real / spliced reference as rows of their own
            r["ref"] = {f"{k} Moving MNIST clips" if k == "real" else "real clips spliced at every boundary": v
                        for k, v in r["truth"].items()}
        out += ["### Table 6 on the shipped model: 4x extension", "", table(ext, EXTEND_COLUMNS), "",
                "References (the same boundaries, τ = the real clips' own):", "", table(ext, EXTEND_COLUMNS, "ref"),
                "", summary(ext), ""]
    if "cascade" in runs:
        out += cascade_section(runs["cascade"])
    return "\n".join(out)


# --- strips ------------------------------------------------------------------------------------


def to_uint8(frames) -> np.ndarray:
    """[T, H, W, C] in [-1, 1] -> uint8 [T, H, W] (channels averaged)."""
    f = np.asarray(frames, np.float64).mean(axis=-1)
    return np.round((np.clip(f, -1, 1) + 1) * 127.5).astype(np.uint8)


def nearest_resize(frames, size: int) -> np.ndarray:
    """[T, h, w, C] -> [T, size, size, C] by pixel repetition (to show a low-resolution condition)."""
    k = size // frames.shape[1]
    return np.repeat(np.repeat(frames, k, axis=1), k, axis=2)


def strip(rows, *, scale: int = 2, gap: int = 2, label_width: int = 170, marks=()) -> Image.Image:
    """One image: per row a text label, then the row's frames left to right.

    rows: [(label, frames [T, H, W, C] in [-1, 1]) or (label, None) for a blank separator];
    marks: frame indices before which a red bar is drawn (block boundaries).
    """
    size = next(f.shape[1] for _, f in rows if f is not None) * scale
    t_max = max(f.shape[0] for _, f in rows if f is not None)
    width = label_width + t_max * (size + gap) + 4 * len(marks)
    heights = [size + gap if f is not None else 6 for _, f in rows]
    img = Image.new("RGB", (width, sum(heights) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    y = gap
    for (label, frames), h in zip(rows, heights):
        if frames is not None:
            draw.text((4, y + size // 2 - 5), label, fill=(0, 0, 0))
            x = label_width
            for t, fr in enumerate(to_uint8(frames)):
                if t in marks:
                    draw.rectangle([x, y, x + 2, y + size - 1], fill=(220, 0, 0))
                    x += 4
                im = Image.fromarray(fr).resize((size, size), Image.Resampling.NEAREST)
                img.paste(im.convert("RGB"), (x, y))
                x += size + gap
        y += h
    return img


def task_strip(npz_paths, *, videos: int = 2, scale: int = 2, marks=(), order=None) -> Image.Image:
    """The strip of one seed's run files: for each of the first `videos` videos, the condition,
    every generated row (in file order, or sorted by the key function `order`), the truth (when
    there is one), then a blank line."""
    arrays = {}
    for path in npz_paths:
        with np.load(path) as z:
            arrays.update({n: z[n] for n in z.files if n not in arrays})
    names = [n for n in arrays if n not in ("condition", "truth")]
    names = names if order is None else sorted(names, key=order)
    size = max(a.shape[2] for a in arrays.values())
    rows = []
    for i in range(min(videos, min(len(a) for a in arrays.values()))):
        if "condition" in arrays:
            c = arrays["condition"][i]
            rows.append((f"condition (video {i})", c if c.shape[1] == size else nearest_resize(c, size)))
        rows += [(n, arrays[n][i]) for n in names]
        if "truth" in arrays:
            rows.append(("truth (real clip)", arrays["truth"][i]))
        rows.append(("", None))
    return strip(rows[:-1], scale=scale, marks=marks)


def held(low, size: int, frameskip: int, length: int) -> np.ndarray:
    """A base video [T, h, w, C] as the final video sees it: pixels repeated to size x size
    (`nearest_resize`), each frame held `frameskip` frames; [length, size, size, C]."""
    return np.repeat(nearest_resize(low, size), frameskip, axis=0)[:length]


def cascade_sets(run: dict, videos: int) -> list[tuple[str, np.ndarray]]:
    """(name, videos [n, T, H, W, C]) of the cascade run's unconditional part for the first `videos`
    videos: the base held (`held`), each cascade row, each direct row."""
    with np.load(run["npz"][0]) as z:
        arrays = {n: z[n][:videos] for n in z.files}
    s, t = run["size"], run["frames"]
    sets = [("base (held)", np.stack([held(v, s, run["frameskip"], t) for v in arrays["base"]]))]
    return sets + [(n, arrays[n]) for n in arrays if n.startswith(("cascade, ", "direct, "))]


def cascade_strip(run: dict, *, videos: int = 2, scale: int = 2) -> Image.Image:
    """For each of the first `videos` videos: the base (pixel-repeated, frames held), the cascade's
    final video and the direct sample, one row each."""
    sets = cascade_sets(run, videos)
    rows = []
    for i in range(min(videos, len(sets[0][1]))):
        rows += [(f"{name} ({i})", v[i]) for name, v in sets] + [("", None)]
    return strip(rows[:-1], scale=scale)


def cascade_gif(run: dict, path, *, videos: int = 2, scale: int = 3, fps: float = 4.0):
    """A GIF of the first `videos` videos, one per line: base (held) | cascade | direct (the first
    w_r of each), each pixel `scale` x `scale`, under a header naming the columns. Returns the path."""
    from vdm_ref.support.data import write_video

    sets = cascade_sets(run, videos)
    cols = [sets[0][1]] + [next(v for n, v in sets if n.startswith(p)) for p in ("cascade, ", "direct, ")]
    cols = [to_uint8(v.reshape((-1,) + v.shape[2:])).reshape(v.shape[:4]) for v in cols]  # uint8 [n, T, H, W]
    n, t, h, w = cols[0].shape
    gap, header = 2, 14
    body = np.full((t, n * (h + gap) - gap, len(cols) * (w + gap) - gap), 255, np.uint8)
    for i in range(n):
        for j, v in enumerate(cols):
            body[:, i * (h + gap): i * (h + gap) + h, j * (w + gap): j * (w + gap) + w] = v[i]
    body = np.repeat(np.repeat(body, scale, axis=1), scale, axis=2)
    top = Image.new("L", (body.shape[2], header), 255)
    draw = ImageDraw.Draw(top)
    for j, label in enumerate(("base", "cascade", "direct")):
        draw.text((j * (w + gap) * scale + 2, 1), label, fill=0)
    top = np.broadcast_to(np.asarray(top), (t,) + np.asarray(top).shape)
    return write_video(path, np.concatenate([top, body], axis=1)[..., None], fps=fps)
