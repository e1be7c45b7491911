"""Every sampler, driven by the oracle's exact denoiser, reproduces the oracle's distribution.

Tolerance: each mean entry and each covariance entry must lie within 5 Monte-Carlo standard
errors of the truth (SE of a sample mean: sqrt(C_ii/n); of a sample covariance of Gaussian data:
sqrt((C_ii C_jj + C_ij²)/n)). With 64 + 2080 checked entries, a correct sampler exceeds 5 SE with
probability ≈ 1e-3; the seed is fixed, so the test is deterministic. A power check shows the same
statistic rejects samples from a slightly different distribution.
"""

import numpy as np
import pytest

from vdm_ref import oracle, samplers, schedule

N, STEPS, SEED = 2000, 100, 1234
ORACLE = oracle.GaussianVideoOracle(shape=(4, 4, 4, 1), rho_t=0.8, rho_s=0.6)


def max_standard_errors(samples, o):
    """The largest |error| / SE over mean entries and covariance entries."""
    f = samples.reshape(samples.shape[0], -1)
    n = f.shape[0]
    d = np.diag(o.cov)
    mean_z = np.abs(f.mean(0) - o.mean.ravel()) / np.sqrt(d / n)
    cov_z = np.abs(np.cov(f.T) - o.cov) / np.sqrt((d[:, None] * d[None, :] + o.cov**2) / n)
    return mean_z.max(), cov_z.max()


def draws(seed, pc=False):
    rng = np.random.default_rng(seed)
    shape = (N,) + ORACLE.shape
    z = rng.standard_normal(shape)
    noise = rng.standard_normal((STEPS - 1,) + shape)
    corrector = rng.standard_normal((STEPS - 1,) + shape) if pc else None
    return z, noise, corrector


@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0])
def test_ancestral_sampler_reproduces_the_oracle(gamma):
    z, noise, _ = draws(SEED)
    x = samplers.sample_ancestral(ORACLE.denoise, z, schedule.logsnr_grid(STEPS), noise, gamma=gamma)
    mean_se, cov_se = max_standard_errors(x, ORACLE)
    assert mean_se < 5.0 and cov_se < 5.0, (mean_se, cov_se)


def test_predictor_corrector_sampler_reproduces_the_oracle():
    z, noise, corrector = draws(SEED + 1, pc=True)
    x = samplers.sample_pc(ORACLE.denoise, z, schedule.logsnr_grid(STEPS), noise, corrector, gamma=0.0)
    mean_se, cov_se = max_standard_errors(x, ORACLE)
    assert mean_se < 5.0 and cov_se < 5.0, (mean_se, cov_se)


def test_the_statistic_rejects_a_slightly_wrong_distribution():
    # Power check: samples from a model of a different correlation (ρ_t 0.7 instead of 0.8).
    wrong = oracle.GaussianVideoOracle(shape=(4, 4, 4, 1), rho_t=0.7, rho_s=0.6)
    z, noise, _ = draws(SEED + 2)
    x = samplers.sample_ancestral(wrong.denoise, z, schedule.logsnr_grid(STEPS), noise)
    assert max(max_standard_errors(x, ORACLE)) > 5.0


def test_oracle_samples_and_exact_conditional_are_consistent():
    rng = np.random.default_rng(0)
    x = ORACLE.sample(rng.standard_normal((20_000,) + ORACLE.shape))
    assert max(max_standard_errors(x, ORACLE)) < 5.0
    known = np.zeros(ORACLE.shape, dtype=bool)
    known[0] = True  # first frame observed
    mean, cov = ORACLE.conditional(x[:1], known)
    np.testing.assert_allclose(mean.reshape(-1)[: 16], x[0].reshape(-1)[:16])
    assert np.allclose(cov[:16], 0.0, atol=1e-12) and np.all(np.linalg.eigvalsh(cov) > -1e-12)


def test_wrong_noise_shape_is_a_clear_error():
    z, noise, _ = draws(0)
    with pytest.raises(ValueError, match=r"noise must have shape \[steps - 1"):
        samplers.sample_ancestral(ORACLE.denoise, z[:2], schedule.logsnr_grid(STEPS), noise[:, :3])
