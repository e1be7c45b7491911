"""Metric maths (vdm_ref.metrics) against SciPy and closed forms; the vdm_fast mirror under jit.

No network runs here (tests/test_i3d.py has the I3D); everything is small and fast.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.special
from hypothesis import given
from hypothesis import strategies as st

from vdm_ref import metrics as ref


def _spd(rng, d, scale=1.0):
    """A well-conditioned random SPD matrix: M Mᵀ / d + 0.1 I (eigenvalues ≥ 0.1)."""
    m = rng.normal(size=(d, d))
    return scale * (m @ m.T / d + 0.1 * np.eye(d))


def _scipy_frechet(mu1, c1, mu2, c2):
    """The textbook formula of the FID code: ||Δμ||² + tr(C₁ + C₂ − 2 sqrtm(C₁ C₂))."""
    covmean = scipy.linalg.sqrtm(c1 @ c2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2.0 * np.trace(covmean).real)


# ---------------------------------------------------------------------------------------------
# Fréchet distance


@given(d=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_frechet_distance_matches_scipy_sqrtm_formula(d, seed):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    c1, c2 = _spd(rng, d), _spd(rng, d, scale=2.0)
    got = float(ref.frechet_distance(mu1, c1, mu2, c2))
    want = _scipy_frechet(mu1, c1, mu2, c2)
    # Both in float64 on matrices with condition number ≲ 1e3: agreement to ~1e-10 relative;
    # 1e-8 leaves room for scipy's Schur-based sqrtm of the non-symmetric product C₁C₂.
    assert got == pytest.approx(want, rel=1e-8, abs=1e-8 * (np.trace(c1) + np.trace(c2)))


@given(d=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_frechet_distance_of_equal_gaussians_is_zero(d, seed):
    rng = np.random.default_rng(seed)
    mu, c = rng.normal(size=d), _spd(rng, d)
    # tr(C) + tr(C) − 2 tr((C^{1/2} C C^{1/2})^{1/2}) = 0 exactly; float64 eigh leaves ~1e-14 tr C.
    assert float(ref.frechet_distance(mu, c, mu, c)) == pytest.approx(0.0, abs=1e-10 * np.trace(c))


@given(d=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_frechet_distance_of_shifted_means_is_squared_shift(d, seed):
    rng = np.random.default_rng(seed)
    mu, c, delta = rng.normal(size=d), _spd(rng, d), 3.0 * rng.normal(size=d)
    want = float(np.sum(delta**2))
    got = float(ref.frechet_distance(mu + delta, c, mu, c))
    assert got == pytest.approx(want, rel=1e-9, abs=1e-10 * np.trace(c))


@given(d=st.integers(1, 10), seed=st.integers(0, 2**31 - 1))
def test_frechet_distance_of_commuting_covariances_is_sum_of_squared_root_gaps(d, seed):
    # C₁ = Q diag(a) Qᵀ, C₂ = Q diag(b) Qᵀ commute, so the trace term is Σ √(a_i b_i) and
    # d² = ||Δμ||² + Σ_i (√a_i − √b_i)².
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.0, 4.0, size=d), rng.uniform(0.0, 4.0, size=d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    c1, c2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    want = float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    # Zero eigenvalues are allowed (a_i may be ~0): sqrt near 0 amplifies rounding to ~1e-8.
    assert float(ref.frechet_distance(mu1, c1, mu2, c2)) == pytest.approx(want, rel=1e-7, abs=1e-7)


def test_frechet_distance_in_one_dimension_is_textbook():
    # N(m₁, s₁²), N(m₂, s₂²): W2² = (m₁ − m₂)² + (s₁ − s₂)².
    got = ref.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert float(got) == pytest.approx(9.0 + 1.0, rel=1e-12)


def test_gaussian_w2_is_a_metric():
    rng = np.random.default_rng(0)
    d = 6
    g = [(rng.normal(size=d), _spd(rng, d, scale=s)) for s in (0.5, 1.0, 3.0)]
    w = lambda i, j: float(ref.gaussian_w2(*g[i], *g[j]))
    for i in range(3):
        assert w(i, i) == pytest.approx(0.0, abs=1e-6)  # sqrt of ~1e-14 rounding
        for j in range(3):
            assert w(i, j) == pytest.approx(w(j, i), rel=1e-9)  # symmetric
            for k in range(3):
                assert w(i, k) <= w(i, j) + w(j, k) + 1e-9  # triangle inequality


def test_frechet_distance_handles_rank_deficient_covariances():
    # FVD with fewer videos than feature dimensions (16 clips, 400 logits) has singular
    # covariances: the eigh-based square root must stay finite, ≥ 0, and give 0 for a set
    # against itself (scipy's sqrtm of a singular product can return complex or nan here).
    rng = np.random.default_rng(1)
    f = rng.normal(size=(16, 128)) * 5.0
    g = rng.normal(size=(16, 128)) * 5.0 + 1.0
    same = float(ref.frechet_distance_from_features(f, f))
    diff = float(ref.frechet_distance_from_features(f, g))
    assert same == pytest.approx(0.0, abs=1e-9 * np.trace(np.cov(f.T)))
    # d² ≥ ||μ̂_f − μ̂_g||², whose mean is 128 (the shift) + 2·128·25/16 (sample-mean noise) ≈ 528.
    assert np.isfinite(diff) and diff > 128.0


def test_feature_statistics_are_mean_and_unbiased_covariance():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(37, 5)) @ rng.normal(size=(5, 5))
    mu, cov = ref.feature_statistics(f)
    np.testing.assert_allclose(mu, f.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cov, np.cov(f, rowvar=False), rtol=1e-12, atol=1e-12)


def test_frechet_distance_from_features_is_distance_of_fitted_gaussians():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(40, 6)), rng.normal(size=(55, 6)) * 1.5 + 0.3
    want = _scipy_frechet(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert float(ref.frechet_distance_from_features(a, b)) == pytest.approx(want, rel=1e-8)


@pytest.mark.parametrize("shapes", [((1, 4), (5, 4)), ((5, 4), (5, 3)), ((5,), (5, 4))])
def test_frechet_distance_from_features_rejects_bad_shapes(shapes):
    a, b = np.zeros(shapes[0]), np.zeros(shapes[1])
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        ref.frechet_distance_from_features(a, b)


# ---------------------------------------------------------------------------------------------
# Inception Score


def _scipy_inception_score(logits, splits):
    """The original IS code: per split exp(mean_x KL(p(y|x) ‖ p(y))), then mean and np.std."""
    p = scipy.special.softmax(logits, axis=1)
    n = p.shape[0]
    scores = []
    for k in range(splits):
        part = p[k * n // splits:(k + 1) * n // splits]
        py = part.mean(axis=0, keepdims=True)
        kl = scipy.special.rel_entr(part, np.broadcast_to(py, part.shape)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


@given(n=st.integers(1, 40), c=st.integers(2, 12), splits=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_inception_score_matches_scipy_formula(n, c, splits, seed):
    splits = min(splits, n)
    logits = np.random.default_rng(seed).normal(size=(n, c)) * 3.0
    mean, std = ref.inception_score_from_logits(logits, splits)
    want_mean, want_std = _scipy_inception_score(logits, splits)
    # float64 on both sides; log-space vs direct softmax differ by ~1e-15 relative.
    assert float(mean) == pytest.approx(want_mean, rel=1e-10)
    assert float(std) == pytest.approx(want_std, rel=1e-8, abs=1e-12)


def test_inception_score_of_identical_predictions_is_one():
    # Uniform logits (p(y|x) = 1/C for every x) or any repeated row: p(y|x) = p(y), KL = 0.
    assert float(ref.inception_score_from_logits(np.zeros((20, 400)))[0]) == pytest.approx(1.0, abs=1e-12)
    row = np.random.default_rng(4).normal(size=(1, 10))
    mean, std = ref.inception_score_from_logits(np.repeat(row, 30, axis=0), 3)
    assert float(mean) == pytest.approx(1.0, abs=1e-12) and float(std) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("c", [2, 10, 400])
def test_inception_score_of_confident_distinct_classes_is_class_count(c):
    # Each of C samples one-hot on its own class: p(y) uniform, KL = log C, IS = C.
    # exp(-1000) underflows to exactly 0 in float64, so these are exact one-hots.
    assert float(ref.inception_score_from_logits(1000.0 * np.eye(c))[0]) == pytest.approx(c, rel=1e-12)
    # -inf logits (p exactly 0) contribute 0 · log 0 := 0, not nan.
    hard = np.where(np.eye(c) > 0, 0.0, -np.inf)
    assert float(ref.inception_score_from_logits(hard)[0]) == pytest.approx(c, rel=1e-12)
    # k balanced copies of the same C one-hots: still C; splits into whole copies: C ± 0.
    mean, std = ref.inception_score_from_logits(np.tile(1000.0 * np.eye(c), (4, 1)), 4)
    assert float(mean) == pytest.approx(c, rel=1e-12) and float(std) == pytest.approx(0.0, abs=1e-9)


@given(seed=st.integers(0, 2**31 - 1))
def test_inception_score_is_between_one_and_class_count_and_shift_invariant(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(25, 7)) * 4.0
    score = float(ref.inception_score_from_logits(logits)[0])
    assert 1.0 - 1e-12 <= score <= 7.0 + 1e-12
    shifted = logits + rng.normal(size=(25, 1)) * 100.0  # softmax ignores a per-row constant
    assert float(ref.inception_score_from_logits(shifted)[0]) == pytest.approx(score, rel=1e-9)


def test_inception_score_splits_report_mean_and_population_std():
    logits = np.concatenate([1000.0 * np.eye(4), np.zeros((4, 4))])  # split 1: IS 4; split 2: IS 1
    mean, std = ref.inception_score_from_logits(logits, 2)
    assert float(mean) == pytest.approx(2.5, rel=1e-12)
    assert float(std) == pytest.approx(1.5, rel=1e-12)


@pytest.mark.parametrize("shape,splits", [((5, 3), 0), ((5, 3), 6), ((5,), 1)])
def test_inception_score_rejects_bad_splits_or_shapes(shape, splits):
    with pytest.raises(ValueError, match="splits"):
        ref.inception_score_from_logits(np.zeros(shape), splits)


# ---------------------------------------------------------------------------------------------
# vdm_fast mirror


def test_fast_metrics_export_every_reference_name():
    from vdm_fast import metrics as fast

    public = [n for n in dir(ref) if not n.startswith("_") and callable(getattr(ref, n))
              and getattr(getattr(ref, n), "__module__", "") == ref.__name__]
    assert public, "no public reference functions found"
    for name in public:
        assert hasattr(fast, name), f"vdm_fast.metrics lacks {name}"


@given(d=st.integers(2, 16), seed=st.integers(0, 2**31 - 1))
def test_fast_frechet_distance_under_jit_float32_agrees_with_numpy_float64(d, seed):
    from vdm_fast import metrics as fast

    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(64, d)), rng.normal(size=(48, d)) * 1.3 + 0.5
    want = float(ref.frechet_distance_from_features(a, b))
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    got = float(jax.jit(fast.frechet_distance_from_features)(f32(a), f32(b)))
    # float32 eigh/matmul on O(1) entries: ~1e-6 relative per op, summed over d eigenvalues
    # and cancelled against the traces; 1e-3 of the traces bounds it with margin.
    assert got == pytest.approx(want, abs=1e-3 * (d + want))


@given(splits=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_fast_inception_score_under_jit_float32_agrees_with_numpy_float64(splits, seed):
    from vdm_fast import metrics as fast

    logits = np.random.default_rng(seed).normal(size=(32, 50)) * 5.0
    want = ref.inception_score_from_logits(logits, splits)
    got = jax.jit(fast.inception_score_from_logits, static_argnums=1)(jnp.asarray(logits, jnp.float32), splits)
    # float32 log-softmax and exp of a mean KL ≤ log 50: ~1e-6 relative; 1e-4 with margin.
    assert float(got[0]) == pytest.approx(float(want[0]), rel=1e-4)
    assert float(got[1]) == pytest.approx(float(want[1]), rel=1e-3, abs=1e-4)


def test_fast_fvd_and_inception_score_check_inputs_before_running_the_network():
    # Every user error is caught at the boundary, before the weights load or anything compiles.
    from vdm_fast import metrics as fast

    ok = np.zeros((2, 9, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="at least 2"):
        fast.fvd(ok[:1], ok)
    with pytest.raises(ValueError, match="at least 9"):
        fast.fvd(ok[:, :8], ok)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        fast.fvd(ok + 2.0, ok)
    with pytest.raises(ValueError, match=r"\[N, T, H, W, 3\]"):
        fast.fvd(ok[..., :1], ok)
    with pytest.raises(ValueError, match="layer"):
        fast.fvd(ok, ok, layer="pool5")
    with pytest.raises(ValueError, match="splits"):
        fast.inception_score(ok, splits=3)
    with pytest.raises(ValueError, match="batch_size"):
        fast.i3d_embeddings(ok, batch_size=0)
