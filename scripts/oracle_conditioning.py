"""Measure Sec. 3.1 on the exact oracle: replacement vs reconstruction guidance (Eq. 7/8).

For each task the exact conditional p(x | observation) of the Gaussian oracle is known, so each
method's samples are scored by the RMSE of their mean and the W2 distance of their Gaussian fit
to it. "exact samples" rows draw from the exact conditional itself: the Monte-Carlo floor.

    python scripts/oracle_conditioning.py --samples 2000 --steps 128 --seed 0
"""

import argparse
import time

import numpy as np

from vdm_ref import conditioning as C
from vdm_ref import guidance, metrics, oracle, schedule


def downsample_matrix(shape, factor):
    """The area downsampling D of Eq. 8 as a matrix [M, D] (D applied to each basis video)."""
    dim = int(np.prod(shape))
    basis = np.eye(dim).reshape((dim,) + tuple(shape))
    return guidance.downsample_area(basis, factor).reshape(dim, -1).T


def tasks(o, x_true, n):
    t, h, w, c = o.shape
    xa = np.broadcast_to(x_true, (n,) + o.shape)
    flat = x_true.reshape(1, -1)
    for name, known in (("extension (2 -> 8 frames)", C.prefix_frames(t, 2)),
                        ("interpolation (every 4th frame)", C.every_kth_frame(t, 4))):
        m = C.frame_mask(t, known)
        mean, cov = o.conditional(x_true, np.broadcast_to(m[0].astype(bool), o.shape))
        yield name, C.Observation(x=xa, mask=m), mean.reshape(-1), cov
    a = downsample_matrix(o.shape, 2)
    mean, cov = o.conditional_linear(a, flat @ a.T)
    low = guidance.downsample_area(x_true, 2)
    ones = np.ones((1, t, 1, 1, 1))
    yield ("spatial 2x super-resolution (Eq. 8)",
           C.Observation(low_res=np.broadcast_to(low, (n,) + low.shape[1:]), low_res_mask=ones, factor=2),
           mean.reshape(-1), cov)
    m = C.frame_mask(t, C.prefix_frames(t, 2))
    a2 = np.concatenate([a, np.eye(o.dim)[np.flatnonzero(np.broadcast_to(m[0].astype(bool), o.shape))]])
    mean, cov = o.conditional_linear(a2, flat @ a2.T)
    yield ("both: low-res video + 2 full-res frames (Fig. 2)",
           C.Observation(x=xa, mask=m, low_res=np.broadcast_to(low, (n,) + low.shape[1:]), low_res_mask=ones, factor=2),
           mean.reshape(-1), cov)


METHODS = (
    ("replacement q(z_s|x^a)", dict(w_r=0.0, replacement="marginal")),
    ("replacement q(z_s|x^a,z_t)", dict(w_r=0.0, replacement="posterior")),
    ("reconstruction w_r=1", dict(w_r=1.0)),
    ("reconstruction w_r=2", dict(w_r=2.0)),
    ("reconstruction w_r=5", dict(w_r=5.0)),
    ("reconstruction w_r=10", dict(w_r=10.0)),
    ("replacement + Langevin (PC)", dict(w_r=0.0, pc=True)),
    ("reconstruction w_r=5 + Langevin (PC)", dict(w_r=5.0, pc=True)),
)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    o = oracle.GaussianVideoOracle(shape=(8, 4, 4, 1), rho_t=0.9, rho_s=0.6)
    x_true = o.sample(rng.standard_normal((1,) + o.shape))
    logsnrs = schedule.logsnr_grid(args.steps)
    n, shape = args.samples, (args.samples,) + o.shape
    print(f"Oracle: GaussianVideoOracle(shape=(8,4,4,1), rho_t=0.9, rho_s=0.6); {n} samples per row; "
          f"{args.steps} steps, gamma=0; seed {args.seed}.\n")
    print("| task | method | mean RMSE | W2 | seconds |\n|---|---|---|---|---|")
    for task, obs, mean, cov in tasks(o, x_true, n):
        w, v = np.linalg.eigh(cov)
        exact = mean[None] + (rng.standard_normal((n, o.dim)) * np.sqrt(np.clip(w, 0, None))) @ v.T
        rows = [("exact samples (Monte-Carlo floor)", exact, 0.0)]
        for name, kw in METHODS:
            kw = dict(kw)
            pc = kw.pop("pc", False)
            if obs.x is None and kw.get("replacement") == "posterior":
                continue  # no full-resolution entries to replace: identical to the marginal row
            t0 = time.perf_counter()
            x = C.sample_conditional(
                o.denoise_vjp, rng.standard_normal(shape), logsnrs,
                rng.standard_normal((args.steps - 1,) + shape), rng.standard_normal((args.steps,) + shape), obs,
                corrector_noise=rng.standard_normal((args.steps - 1,) + shape) if pc else None, **kw)
            if obs.x is None and name.startswith("replacement"):
                name = "no guidance (w_r=0; nothing to replace)" + (" + Langevin (PC)" if pc else "")
            rows.append((name, x.reshape(n, -1), time.perf_counter() - t0))
        for name, f, secs in rows:
            mu, cv = f.mean(0), np.cov(f.T)
            rmse = np.sqrt(np.mean((mu - mean) ** 2))
            w2 = float(metrics.gaussian_w2(mu, cv, mean, cov))
            print(f"| {task} | {name} | {rmse:.4f} | {w2:.4f} | {secs:.1f} |")


if __name__ == "__main__":
    main()
