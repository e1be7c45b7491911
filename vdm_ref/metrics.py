"""Metric maths of Sec. 4: the Fréchet distance behind FVD [54] and FID [19], and the Inception
Score [43], generic over the array namespace (NumPy float64 is the oracle; `jax.numpy` under jit).

- Fréchet distance between Gaussians fitted to two feature sets, i.e. the squared
  2-Wasserstein distance W2² = ||μ₁ − μ₂||² + tr(C₁ + C₂ − 2 (C₂^{1/2} C₁ C₂^{1/2})^{1/2}).
  FVD is this distance between I3D features of real and generated videos (`vdm_fast.metrics.fvd`).
- Inception Score IS = exp(E_x KL(p(y|x) ‖ p(y))), p(y) = E_x p(y|x), from classifier logits; with
  `splits` it is computed on consecutive parts and reported as mean ± std over the parts (the
  paper's Sec. 4.3 reports 1 split and 10 splits).

The feature networks (I3D) live in `vdm_fast`; everything here is array maths.
"""

from ._array import namespace


def sqrtm_psd(c):
    """C^{1/2} of a symmetric positive semi-definite matrix via eigh (negative eigenvalues → 0)."""
    xp = namespace(c)
    w, v = xp.linalg.eigh(0.5 * (c + xp.permute_dims(c, (1, 0))))
    return (v * xp.sqrt(xp.clip(w, 0.0, None))[None, :]) @ xp.permute_dims(v, (1, 0))


def frechet_distance(mu1, cov1, mu2, cov2):
    """d² = ||μ₁ − μ₂||² + tr(C₁) + tr(C₂) − 2 tr((C₂^{1/2} C₁ C₂^{1/2})^{1/2}).

    The symmetric form C₂^{1/2} C₁ C₂^{1/2} keeps the inner square root on a PSD matrix, so it is
    computed by eigh rather than a general (unstable) sqrtm. mu: [D]; cov: [D, D]. Returns d² ≥ 0.
    """
    xp = namespace(mu1, cov1)
    s2 = sqrtm_psd(cov2)
    inner = s2 @ cov1 @ s2
    w = xp.linalg.eigvalsh(0.5 * (inner + xp.permute_dims(inner, (1, 0))))
    diff = mu1 - mu2
    d2 = xp.sum(diff * diff) + xp.linalg.trace(cov1) + xp.linalg.trace(cov2) - 2.0 * xp.sum(xp.sqrt(xp.clip(w, 0.0, None)))
    return xp.clip(d2, 0.0, None)


def gaussian_w2(mu1, cov1, mu2, cov2):
    """W2 = sqrt(Fréchet distance): the 2-Wasserstein distance between N(μ₁, C₁) and N(μ₂, C₂)."""
    xp = namespace(mu1, cov1)
    return xp.sqrt(frechet_distance(mu1, cov1, mu2, cov2))


def feature_statistics(features):
    """μ = (1/N) Σ_n f_n,  C = (1/(N−1)) Σ_n (f_n − μ)(f_n − μ)ᵀ: the Gaussian fitted to features.

    features: [N, D], N ≥ 2. Returns (μ [D], C [D, D]); C is the unbiased sample covariance, as in
    the FVD code (TF-GAN) and `numpy.cov`.
    """
    xp = namespace(features)
    n = features.shape[0]
    if features.ndim != 2 or n < 2:
        raise ValueError(f"features must be [N, D] with N >= 2 (a covariance needs two samples), got shape {features.shape}")
    mu = xp.mean(features, axis=0)
    centred = features - mu[None, :]
    return mu, (xp.permute_dims(centred, (1, 0)) @ centred) / (n - 1)


def frechet_distance_from_features(features_a, features_b):
    """d²(N(μ_a, C_a), N(μ_b, C_b)) with (μ, C) = `feature_statistics` of each set: FVD/FID given
    the network's features. features_a: [N_a, D]; features_b: [N_b, D]."""
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"feature sets must be [N, D] with the same D, got {features_a.shape} and {features_b.shape}")
    mu_a, cov_a = feature_statistics(features_a)
    mu_b, cov_b = feature_statistics(features_b)
    return frechet_distance(mu_a, cov_a, mu_b, cov_b)


def _log_softmax(logits):
    """log p(y|x) = ℓ_y − log Σ_k exp ℓ_k over the last axis (max-shifted)."""
    xp = namespace(logits)
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def inception_score_split(logits):
    """IS = exp( (1/N) Σ_n KL(p(y|x_n) ‖ p(y)) ),  p(y) = (1/N) Σ_n p(y|x_n)  (Salimans et al. [43]).

    logits: [N, C] (unnormalised; softmax gives p(y|x)). Returns a scalar in [1, C]: 1 when every
    prediction is the same, C when predictions are confident and spread evenly over C classes.
    Terms with p(y|x) = 0 contribute 0 (the limit of p log p).
    """
    xp = namespace(logits)
    n = logits.shape[0]
    log_p = _log_softmax(logits)  # [N, C]
    # log p(y) = log (1/N) Σ_n p(y|x_n), computed in log space (max-shifted).
    m = xp.max(log_p, axis=0, keepdims=True)
    log_py = m + xp.log(xp.sum(xp.exp(log_p - m), axis=0, keepdims=True) / n)  # [1, C]
    p = xp.exp(log_p)
    # Where p = 0 both logs may be -inf: substitute 0 before subtracting so no nan is formed.
    keep = p > 0
    zero = xp.zeros_like(p)
    kl_terms = p * (xp.where(keep, log_p, zero) - xp.where(keep, log_py, zero))
    return xp.exp(xp.mean(xp.sum(kl_terms, axis=1)))


def inception_score_from_logits(logits, splits: int = 1):
    """Inception Score with splits: IS_k = `inception_score_split` of the k-th of `splits`
    consecutive parts (rows [k N / splits, (k+1) N / splits), as in the original IS code); returns
    (mean_k IS_k, std_k IS_k) with the population std (0 for one split).

    logits: [N, C], N ≥ splits ≥ 1.
    """
    xp = namespace(logits)
    n = logits.shape[0]
    if logits.ndim != 2 or not 1 <= splits <= n:
        raise ValueError(f"logits must be [N, C] with N >= splits >= 1, got shape {logits.shape} and splits={splits}")
    scores = xp.stack([inception_score_split(logits[k * n // splits:(k + 1) * n // splits]) for k in range(splits)])
    mean = xp.mean(scores)
    return mean, xp.sqrt(xp.mean((scores - mean) ** 2))
