"""Metric maths: the Fréchet distance between Gaussians (FVD/FID [54, 19]), i.e. the squared
2-Wasserstein distance W2² = ||μ₁ − μ₂||² + tr(C₁ + C₂ − 2 (C₂^{1/2} C₁ C₂^{1/2})^{1/2}).
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
