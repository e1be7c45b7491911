"""Samplers (Sec. 2): the ancestral sampler (Eq. 4) and the predictor-corrector sampler that
alternates Eq. 4 with the Langevin corrector (Eq. 5).

Every sampler has the same leading signature, k-diffusion style:

    sampler(denoise_fn, z, logsnrs, noise, ..., *, options)

- denoise_fn(z [B, ...], λ [B]) -> x̂ [B, ...], the model's estimate of x (any parameterisation
  converted by `parameterization.x_from_prediction`);
- z: z_1 ~ N(0, I), [B, ...];
- logsnrs: the λ grid [steps + 1] from t = 1 to t = 0 (`schedule.logsnr_grid`);
- noise: the ancestral draws ε, [steps − 1, B, ...] (the last step returns x̂ with no noise).
All randomness comes in as arrays, so two implementations can consume the same draws.
`vdm_fast`'s samplers also take a `jax.random` key in place of each noise array (draw i =
normal(fold_in(key, i))); `vdm_fast.samplers.noise_from_key` materialises those draws for this one.
"""

from ._array import namespace, per_example
from .diffusion import ancestral_variance, posterior_mean_var
from .parameterization import eps_from_x
from .schedule import alpha_sigma

LANGEVIN_DELTA = 0.1


def ancestral_step(z_t, x_hat, logsnr_s, logsnr_t, noise, gamma):
    """z_s = μ̃_{s|t}(z_t, x̂_θ(z_t)) + sqrt((σ̃²_{s|t})^{1−γ} (σ²_{t|s})^{γ}) ε  (Eq. 4).

    z_t, x_hat, noise: [B, ...]; logsnr_s, logsnr_t: [B] with λ_s > λ_t; γ in [0, 1].
    """
    xp = namespace(z_t)
    mean, _ = posterior_mean_var(z_t, x_hat, logsnr_s, logsnr_t)
    std = xp.sqrt(ancestral_variance(logsnr_s, logsnr_t, gamma))
    return mean + per_example(std, z_t) * noise


def langevin_step(z_s, eps_hat, logsnr_s, noise, delta=LANGEVIN_DELTA):
    """z_s ← z_s − ½ δ σ_s ε̂_θ(z_s) + sqrt(δ) σ_s ε′  (Eq. 5).

    Langevin dynamics with step δσ_s² on the score ∇ log p(z_s) ≈ −ε̂/σ_s.
    z_s, eps_hat, noise: [B, ...]; logsnr_s: [B]; δ = 0.1 in the paper.
    """
    _, sigma = alpha_sigma(logsnr_s)
    sigma = per_example(sigma, z_s)
    return z_s - 0.5 * delta * sigma * eps_hat + delta**0.5 * sigma * noise


def per_step_logsnr(logsnrs, i, z):
    """λ at grid point i as a per-example [B] array for a batch z [B, ...]."""
    xp = namespace(z)
    return xp.full((z.shape[0],), logsnrs[i], dtype=z.dtype)


def _check_noise(name, noise, steps, z):
    expected = (steps - 1,) + tuple(z.shape)
    if tuple(noise.shape) != expected:
        raise ValueError(f"{name} must have shape [steps - 1, *z.shape] = {expected}, got {tuple(noise.shape)}")


def reverse_process(denoise_fn, z, logsnrs, noise, corrector_noise=None, *, gamma=0.0,
                    delta=LANGEVIN_DELTA, replace_fn=None, update_mask=None):
    """The loop shared by every sampler: from t = 1 to 0, Eq. 4, then optionally Eq. 5.

    - replace_fn(z_s, z_t, λ_s, λ_t, i) -> z_s: applied after each predictor step (the
      replacement method of Sec. 3.1); None for unconditional sampling.
    - update_mask: entries the corrector may move (1) — the unknown part in conditional sampling.
    Returns x̂ at the last grid point before t = 0 (no noise on the last step).
    """
    steps = logsnrs.shape[0] - 1
    _check_noise("noise", noise, steps, z)
    if corrector_noise is not None:
        _check_noise("corrector_noise", corrector_noise, steps, z)
    for i in range(steps - 1):
        logsnr_t, logsnr_s = per_step_logsnr(logsnrs, i, z), per_step_logsnr(logsnrs, i + 1, z)
        z_s = ancestral_step(z, denoise_fn(z, logsnr_t), logsnr_s, logsnr_t, noise[i], gamma)
        if replace_fn is not None:
            z_s = replace_fn(z_s, z, logsnr_s, logsnr_t, i)
        if corrector_noise is not None:
            eps_hat = eps_from_x(z_s, denoise_fn(z_s, logsnr_s), logsnr_s)
            z_new = langevin_step(z_s, eps_hat, logsnr_s, corrector_noise[i], delta)
            z_s = z_new if update_mask is None else update_mask * z_new + (1 - update_mask) * z_s
        z = z_s
    return denoise_fn(z, per_step_logsnr(logsnrs, steps - 1, z))


def sample_ancestral(denoise_fn, z, logsnrs, noise, *, gamma=0.0):
    """The ancestral sampler: Eq. 4 on the uniform grid from t = 1 to 0, x̂ at the last step.

    γ interpolates the variance between the lower (σ̃²_{s|t}, γ=0) and upper (σ²_{t|s}, γ=1)
    bounds. Network evaluations: steps. Shapes: see the module docstring.
    """
    return reverse_process(denoise_fn, z, logsnrs, noise, gamma=gamma)


def sample_pc(denoise_fn, z, logsnrs, noise, corrector_noise, *, gamma=0.0, delta=LANGEVIN_DELTA):
    """The predictor-corrector sampler: Eq. 4 then one Langevin correction (Eq. 5) at each z_s.

    corrector_noise: ε′, [steps − 1, B, ...]. Network evaluations: 2 (steps − 1) + 1.
    """
    return reverse_process(denoise_fn, z, logsnrs, noise, corrector_noise, gamma=gamma, delta=delta)
