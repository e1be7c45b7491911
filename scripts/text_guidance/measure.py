"""What one run measures: caption-conditioned videos at a guidance weight w (Eq. 6), their caption
fidelity, FVD against real clips, and the diversity of the videos of one caption.

- `generate`: videos conditioned on captions, sampled in batches of one shape, timed per batch.
- `fidelity`: `caption_fidelity.score_captions` as a JSON-able dict (fidelity, digit and motion
  rates with their standard errors).
- `pairwise_rms`, `centre_spread`, `diversity`: how different K videos of one caption are.
- `caption_clips`: real test-split clips whose caption is a given one (the real diversity).
- `cached_embed`, `fvd`: I3D logits cached on disk by the videos' hash, FVD with its spread
  (`vdm_fast.evaluation`: `i3d_input`, `fvd_with_spread`).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from vdm_fast.evaluation import fvd_with_spread, i3d_input
from vdm_ref.support.eval import detect_digits
from vdm_ref.support.eval.caption_fidelity import score_captions

#: The diversity videos of seed S use the key fold_in(fold_in(key(S), DIVERSITY_STREAM), batch),
#: the main set fold_in(key(S), batch) (as `vdm_fast.evaluation.generate`): two disjoint streams.
DIVERSITY_STREAM = 1_000_003
#: FVD is also reported over this many disjoint parts of the N pairs (mean ± std), when each part
#: has at least `FVD_SPLIT_ROWS` pairs.
FVD_SPLITS = 2
FVD_SPLIT_ROWS = 8


def generate(model, cond, options, key, *, batch_size: int) -> tuple[np.ndarray, list[float]]:
    """Videos x ~ p_θ(x | c) (Eq. 6 at w = options.guidance_weight), one per row of `cond`.

    **Arguments:** `cond`: (tokens [N, L, D], mask [N, L]) of N captions (`ConditionEncoder`);
    `key`: a jax key, batch b sampled with fold_in(key, b); `batch_size`: videos per batch. The
    last batch is filled up to `batch_size` by repeating its last condition (the extra videos are
    dropped), so every batch has one shape and the sampler compiles once per w path.

    **Returns:** (videos float32 [N, F, H, W, C] in [-1, 1], wall seconds of each batch).
    """
    import jax

    from vdm_fast.generation import sample

    tokens, mask = (np.asarray(c) for c in cond)
    n, outs, seconds = tokens.shape[0], [], []
    for b, start in enumerate(range(0, n, batch_size)):
        rows = np.minimum(np.arange(start, start + batch_size), n - 1)
        t0 = time.perf_counter()
        video = sample(model, jax.random.fold_in(key, b), batch_size=batch_size, cond=(tokens[rows], mask[rows]),
                       options=options)
        video = np.asarray(video, np.float32)  # on the host: the batch is done
        seconds.append(time.perf_counter() - t0)
        outs.append(video[: min(batch_size, n - start)])
    return np.clip(np.concatenate(outs), -1.0, 1.0), seconds


def fidelity(videos, captions, digit_size: int, classifier) -> dict:
    """Caption fidelity of videos [N, T, H, W, C] against N captions (or one for all):
    `caption_fidelity.fidelity_report(...).as_dict()` — fidelity (digit and motion of a clause on
    one track), digit rate, motion rate, each a mean over scored videos with its standard error."""
    return score_captions(videos, captions, digit_size, classifier=classifier).as_dict()


def pairwise_rms(videos) -> float:
    """Mean over pairs i < j of the per-pixel RMS distance  sqrt(mean((x_i − x_j)²))  of videos
    [K, T, H, W, C] (K >= 2). Pixels in [-1, 1], so the distance is in [0, 2]."""
    v = np.asarray(videos, np.float64).reshape(len(videos), -1)
    if v.shape[0] < 2:
        raise ValueError(f"pairwise_rms needs at least 2 videos, got {v.shape[0]}")
    sq = np.sum(v * v, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * v @ v.T, 0.0) / v.shape[1]
    i, j = np.triu_indices(v.shape[0], k=1)
    return float(np.mean(np.sqrt(d2[i, j])))


def first_frame_centres(videos, digit_size: int) -> np.ndarray:
    """(y, x) centre [K, 2] of the inkiest digit of each video's first frame (`detect_digits`);
    NaN for a video whose first frame shows no digit."""
    v = np.asarray(videos, np.float64)
    out = np.full((v.shape[0], 2), np.nan)
    for i, d in enumerate(detect_digits(v[:, 0], digit_size)):
        if len(d):
            out[i] = d.centres[int(np.argmax(d.ink))]
    return out


def centre_spread(videos, digit_size: int) -> tuple[float, int]:
    """Spread of the first-frame digit centres c_i over the videos with a digit:
    sqrt(mean_i ||c_i − c̄||²) in pixels (the 2-D standard deviation; NaN with fewer than 2).
    Returns (spread, how many videos had a digit)."""
    c = first_frame_centres(videos, digit_size)
    c = c[np.all(np.isfinite(c), axis=1)]
    if len(c) < 2:
        return float("nan"), int(len(c))
    return float(np.sqrt(np.mean(np.sum((c - c.mean(axis=0)) ** 2, axis=1)))), int(len(c))


def diversity(videos, caption: str, digit_size: int, classifier) -> dict:
    """The diversity of K videos of one caption: (a) `rms`: `pairwise_rms`; (b) `centre_spread`
    (px) and `centres_found` (`centre_spread`); (c) `fidelity`: the fraction of clauses, over the
    K videos, the videos satisfy (`caption_fidelity`), with the digit and motion rates."""
    spread, found = centre_spread(videos, digit_size)
    f = fidelity(videos, caption, digit_size, classifier)
    return {"videos": int(len(videos)), "rms": pairwise_rms(videos), "centre_spread": spread, "centres_found": found,
            "fidelity": f["fidelity"], "digit": f["digit"], "motion": f["motion"]}


def caption_clips(dataset, caption: str, k: int, limit: int) -> list[int]:
    """Indices of the first k clips i < limit of `dataset` (a `MovingMNIST`) whose caption is
    `caption` (compared after collapsing whitespace, case-insensitively); fewer if there are not
    that many."""
    want = " ".join(caption.lower().split())
    found = []
    for i in range(min(int(limit), len(dataset))):
        if " ".join(dataset.caption(i).lower().split()) == want:
            found.append(i)
            if len(found) == k:
                break
    return found


def cached_embed(cache: str | Path, *, resize: str = "antialias", batch_size: int = 8):
    """videos [N, T, H, W, 3] -> I3D Kinetics-400 logits [N, 400] (`vdm_fast.metrics`), stored as
    cache/<SHA-1 of the array, its shape and the resize>.npy and read back from there next time
    (the real set is embedded once across seeds and runs). Loads I3D now, so missing weights fail
    before any sampling."""
    from vdm_fast.metrics import i3d_embeddings, load_i3d

    net, cache = load_i3d(), Path(cache)

    def embed(videos):
        v = np.ascontiguousarray(videos, np.float32)
        path = cache / (hashlib.sha1(v.tobytes() + repr((v.shape, resize)).encode()).hexdigest() + ".npy")
        if path.exists():
            return np.load(path)
        logits = np.asarray(i3d_embeddings(v, model=net, batch_size=batch_size, resize=resize).logits)
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, logits)
        return logits

    return embed


def i3d_logits(embed, videos) -> tuple[np.ndarray, str]:
    """I3D logits of videos [N, T, H, W, C] in [-1, 1] as `evaluate` shows them to I3D (grey
    repeated over RGB, fewer than 9 frames each repeated ceil(9 / T) times: `i3d_input`), and the
    note saying what was done."""
    x, note = i3d_input(np.clip(videos, -1.0, 1.0))
    return np.asarray(embed(x)), note or "as is"


def fvd(real_logits, gen_logits) -> dict:
    """FVD of the N generated against the N real clips (I3D logits [N, D]), and over `FVD_SPLITS`
    disjoint parts of the N pairs when each has `FVD_SPLIT_ROWS` (`fvd_with_spread`: fvd,
    fvd_split_mean, fvd_split_std)."""
    splits = FVD_SPLITS if min(len(real_logits), len(gen_logits)) >= FVD_SPLITS * FVD_SPLIT_ROWS else 1
    return fvd_with_spread(real_logits, gen_logits, splits)
