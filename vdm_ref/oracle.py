"""An exact oracle: a video-shaped Gaussian data distribution with closed-form denoiser and
conditionals, so every sampler can be checked against the truth (DESIGN.md, Testing).

x ~ N(μ, C) over [T, H, W, C] with separable AR(1) correlations in time and both spatial axes:
C = s² · R_T ⊗ R_H ⊗ R_W ⊗ I_C, R_ij = ρ^{|i−j|}. With z_t = α x + σ ε and C = U Λ Uᵀ,

    E[x | z_t] = μ + C α (α² C + σ² I)⁻¹ (z_t − α μ) = μ + U diag(α λ_k / (α² λ_k + σ²)) Uᵀ (z_t − α μ),

and p(x^b | xᵃ) = N(μ_b + C_ba C_aa⁻¹ (xᵃ − μ_a), C_bb − C_ba C_aa⁻¹ C_ab).

Test infrastructure, backend-free: the precomputation is NumPy; `denoise` and `denoise_vjp` are
generic over the array namespace of z, so the fast backend can consume the same oracle.
"""

__mirror__ = False

import numpy as np

from ._array import namespace
from .schedule import alpha_sigma


def ar1_correlation(n, rho):
    """R_ij = ρ^{|i − j|}, the AR(1) correlation matrix of size n."""
    idx = np.arange(n)
    return rho ** np.abs(idx[:, None] - idx[None, :]).astype(np.float64)


class GaussianVideoOracle:
    """N(μ, C) over videos [T, H, W, C] with AR(1) correlations in time (ρ_t) and space (ρ_s)."""

    def __init__(self, shape=(4, 4, 4, 1), rho_t=0.8, rho_s=0.6, scale=0.5, mean_amplitude=0.2):
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError(f"shape must be (T, H, W, C) with positive sizes, got {shape!r}")
        for name, rho in (("rho_t", rho_t), ("rho_s", rho_s)):
            if not -1.0 < rho < 1.0:
                raise ValueError(f"{name} must lie in (-1, 1), got {rho}")
        self.shape = tuple(shape)
        t, h, w, c = shape
        self.dim = t * h * w * c
        cov = scale**2 * np.kron(
            np.kron(np.kron(ar1_correlation(t, rho_t), ar1_correlation(h, rho_s)), ar1_correlation(w, rho_s)),
            np.eye(c),
        )
        grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(np.float64)
        self.mean = mean_amplitude * np.sin(0.9 * grid[..., 0] + 0.7 * grid[..., 1] - 0.5 * grid[..., 2] + grid[..., 3])
        self.cov = cov
        eigvals, self.eigvecs = np.linalg.eigh(cov)
        self.eigvals = np.maximum(eigvals, 0.0)

    def sample(self, noise):
        """x = μ + U Λ^{1/2} ε for ε: [B, T, H, W, C] standard normal. Returns [B, T, H, W, C]."""
        b = noise.shape[0]
        flat = np.reshape(noise, (b, self.dim)) * np.sqrt(self.eigvals)[None, :]
        return self.mean[None] + np.reshape(flat @ self.eigvecs.T, (b,) + self.shape)

    def _gain(self, logsnr):
        """diag(α λ_k / (α² λ_k + σ²)) per example: [B, D]."""
        xp = namespace(logsnr)
        alpha, sigma = alpha_sigma(logsnr)
        lam = xp.reshape(xp.asarray(self.eigvals, dtype=logsnr.dtype), (1, self.dim))
        a = xp.reshape(alpha, (-1, 1))
        s = xp.reshape(sigma, (-1, 1))
        return a * lam / (a * a * lam + s * s)

    def _apply_gain(self, v, logsnr):
        """U diag(gain) Uᵀ v for v: [B, T, H, W, C] (the Jacobian ∂E[x|z]/∂z, symmetric)."""
        xp = namespace(v)
        u = xp.asarray(self.eigvecs, dtype=v.dtype)
        flat = xp.reshape(v, (v.shape[0], self.dim))
        out = ((flat @ u) * self._gain(logsnr)) @ xp.permute_dims(u, (1, 0))
        return xp.reshape(out, v.shape)

    def denoise(self, z, logsnr):
        """E[x | z_t] = μ + U diag(α λ_k / (α² λ_k + σ²)) Uᵀ (z_t − α μ). z: [B, ...]; λ: [B]."""
        xp = namespace(z)
        alpha, _ = alpha_sigma(logsnr)
        mu = xp.asarray(self.mean, dtype=z.dtype)[None]
        return mu + self._apply_gain(z - xp.reshape(alpha, (-1, 1, 1, 1, 1)) * mu, logsnr)

    def denoise_vjp(self, z, logsnr):
        """(E[x|z_t], g ↦ Jᵀ g) with the exact, symmetric Jacobian J = U diag(gain) Uᵀ."""
        return self.denoise(z, logsnr), lambda g: self._apply_gain(g, logsnr)

    def conditional(self, x_a, known):
        """The exact p(x^b | xᵃ) for a bool mask known [T, H, W, C] (True = observed entry).

        x_a: [B, T, H, W, C]. Returns (mean [B, T, H, W, C], covariance [D, D]) of the whole
        video given the observation; the known entries have mean xᵃ and zero variance.
        """
        known = np.broadcast_to(np.asarray(known, dtype=bool), self.shape).reshape(-1)
        select = np.eye(self.dim)[np.flatnonzero(known)]
        flat = np.reshape(np.asarray(x_a), (x_a.shape[0], self.dim))
        mean, cov = self.conditional_linear(select, flat @ select.T)
        return np.reshape(mean, x_a.shape), cov

    def conditional_linear(self, a, y):
        """The exact p(x | A x = y) for a linear observation A: [M, D], y: [B, M].

        mean = μ + C Aᵀ (A C Aᵀ)⁻¹ (y − A μ),  cov = C − C Aᵀ (A C Aᵀ)⁻¹ A C.
        Returns (mean [B, D], cov [D, D]). Covers frame/pixel masks (A selects entries) and the
        low-resolution observation of Eq. 8 (A = the area downsampling as a matrix).
        """
        mu = self.mean.reshape(-1)
        cat = self.cov @ a.T
        gain = np.linalg.solve(a @ cat, cat.T).T  # C Aᵀ (A C Aᵀ)⁻¹
        mean = mu[None] + (y - (a @ mu)[None]) @ gain.T
        cov = self.cov - gain @ cat.T
        return mean, 0.5 * (cov + cov.T)
