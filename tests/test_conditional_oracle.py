"""Sec. 3.1 measured on the exact oracle: reconstruction guidance beats replacement.

Scores: RMSE of the sample mean against the exact conditional mean, and W2 of the samples'
Gaussian fit against the exact conditional. With 600 samples the Monte-Carlo floor is W2 ≈ 0.3
(docs/results.md); replacement sits near 2, reconstruction (w_r = 5) near 0.5, so requiring a
margin of 0.5 in W2 and a factor of 2 in mean RMSE leaves room for seed noise while still failing
if guidance did nothing.
"""

import numpy as np
import pytest

from vdm_ref import conditioning as C
from vdm_ref import metrics, oracle, schedule

N, STEPS = 600, 64
O = oracle.GaussianVideoOracle(shape=(8, 4, 4, 1), rho_t=0.9, rho_s=0.6)


def score(known, **kw):
    rng = np.random.default_rng(7)
    x_true = O.sample(rng.standard_normal((1,) + O.shape))
    mask = C.frame_mask(8, known)
    obs = C.Observation(x=np.broadcast_to(x_true, (N,) + O.shape), mask=mask)
    shape = (N,) + O.shape
    x = C.sample_conditional(O.denoise_vjp, rng.standard_normal(shape), schedule.logsnr_grid(STEPS),
                             rng.standard_normal((STEPS - 1,) + shape), rng.standard_normal((STEPS,) + shape),
                             obs, **kw)
    np.testing.assert_allclose(x[:, known], np.broadcast_to(x_true[:, known], x[:, known].shape))
    mean, cov = O.conditional(x_true, np.broadcast_to(mask[0].astype(bool), O.shape))
    f = x.reshape(N, -1)
    rmse = np.sqrt(np.mean((f.mean(0) - mean.reshape(-1)) ** 2))
    return rmse, float(metrics.gaussian_w2(f.mean(0), np.cov(f.T), mean.reshape(-1), cov))


@pytest.mark.parametrize("task,known", [("extension", C.prefix_frames(8, 2)),
                                        ("interpolation", C.every_kth_frame(8, 4))])
def test_reconstruction_guidance_is_closer_to_the_exact_conditional(task, known):
    repl_rmse, repl_w2 = score(known, w_r=0.0)
    post_rmse, post_w2 = score(known, w_r=0.0, replacement="posterior")
    rg_rmse, rg_w2 = score(known, w_r=5.0)
    assert rg_w2 < min(repl_w2, post_w2) - 0.5, (rg_w2, repl_w2, post_w2)
    assert 2 * rg_rmse < min(repl_rmse, post_rmse), (rg_rmse, repl_rmse, post_rmse)


def test_observation_errors_are_clear():
    with pytest.raises(ValueError, match="observe something"):
        C.Observation()
    with pytest.raises(ValueError, match="both x and mask"):
        C.Observation(x=np.zeros((1, 2, 2, 2, 1)))
    with pytest.raises(ValueError, match="outside"):
        C.frame_mask(4, [5])
