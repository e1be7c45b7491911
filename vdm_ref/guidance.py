"""Guidance (Sec. 2 and 3.1): classifier-free guidance (Eq. 6) and reconstruction guidance
(Eq. 7 temporal, Eq. 8 spatial, or both at once as in Fig. 2).

A `denoise_vjp(z, λ) -> (x̂, vjp)` returns the model's x̂ and its vector-Jacobian product
g ↦ (∂x̂/∂z)ᵀ g: `with_jax_vjp` builds one from any jax-traceable denoiser, and the Gaussian
oracle provides an exact one in NumPy.
"""

from ._array import namespace, per_example
from .schedule import alpha_sigma


def classifier_free_guidance(eps_cond, eps_uncond, w):
    """ε̃_θ(z_t, c) = (1 + w) ε_θ(z_t, c) − w ε_θ(z_t)  (Eq. 6); unconditional means c = 0.

    Since x̂ = (z − σ ε̂)/α is affine in ε̂, the same combination applies to x̂ predictions.
    """
    return (1.0 + w) * eps_cond - w * eps_uncond


def classifier_free_denoiser(denoise_fn, cond, null_cond, w):
    """A denoise_fn(z, λ) applying Eq. 6 to denoise_fn(z, λ, c): (1 + w) x̂(z, c) − w x̂(z, 0)."""

    def guided(z, logsnr):
        return classifier_free_guidance(denoise_fn(z, logsnr, cond), denoise_fn(z, logsnr, null_cond), w)

    return guided


def downsample_area(x, factor):
    """D(x): mean over factor×factor spatial blocks, [B, T, H, W, C] -> [B, T, H/k, W/k, C].

    The differentiable downsampling of Eq. 8. At factor 2 it equals bilinear resizing (half-pixel
    centres, no antialiasing), whose sample points fall exactly between four pixels.
    """
    xp = namespace(x)
    b, t, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"spatial size {h}x{w} is not divisible by the downsampling factor {factor}")
    blocks = xp.reshape(x, (b, t, h // factor, factor, w // factor, factor, c))
    return xp.mean(xp.mean(blocks, axis=5), axis=3)


def downsample_area_transpose(g, factor):
    """Dᵀ(g), the adjoint of `downsample_area`: each low-res value spread over its block / k²."""
    xp = namespace(g)
    b, t, h, w, c = g.shape
    blocks = xp.reshape(g, (b, t, h, 1, w, 1, c)) / factor**2
    blocks = xp.broadcast_to(blocks, (b, t, h, factor, w, factor, c))
    return xp.reshape(blocks, (b, t, h * factor, w * factor, c))


def reconstruction_loss(x_hat, observation):
    """||xᵃ − x̂ᵃ(z_t)||² + ||yᵃ − D(x̂(z_t))||², per example [B]  (the norms of Eq. 7 and 8).

    The first term over the observed entries (observation.mask), the second over the frames with a
    low-resolution observation (observation.low_res_mask); either may be absent.
    """
    xp = namespace(x_hat)
    loss = xp.zeros((x_hat.shape[0],), dtype=x_hat.dtype)
    if observation.x is not None:
        r = observation.mask * (observation.x - x_hat)
        loss = loss + xp.sum(xp.reshape(r * r, (x_hat.shape[0], -1)), axis=1)
    if observation.low_res is not None:
        r = observation.low_res_mask * (observation.low_res - downsample_area(x_hat, observation.factor))
        loss = loss + xp.sum(xp.reshape(r * r, (x_hat.shape[0], -1)), axis=1)
    return loss


def reconstruction_loss_cotangent(x_hat, observation):
    """∂/∂x̂ of `reconstruction_loss`: −2 m ⊙ (xᵃ − x̂) − 2 Dᵀ(m_lo ⊙ (yᵃ − D(x̂)))."""
    xp = namespace(x_hat)
    g = xp.zeros_like(x_hat)
    if observation.x is not None:
        g = g - 2.0 * observation.mask * observation.mask * (observation.x - x_hat)
    if observation.low_res is not None:
        m = observation.low_res_mask
        r = m * m * (observation.low_res - downsample_area(x_hat, observation.factor))
        g = g - 2.0 * downsample_area_transpose(r, observation.factor)
    return g


def reconstruction_guided_x(x_hat, grad_z, logsnr, w_r, update_mask):
    """x̃_θ(z_t) = x̂_θ(z_t) − (w_r α_t / 2) ∇_{z_t} ||xᵃ − x̂ᵃ_θ(z_t)||²  (Eq. 7, Eq. 8).

    Applied to the entries being generated (update_mask = 1 − m, the b part); for purely spatial
    conditioning (Eq. 8) that is every entry. x_hat, grad_z: [B, ...]; logsnr: [B].
    """
    alpha, _ = alpha_sigma(logsnr)
    return x_hat - 0.5 * w_r * per_example(alpha, x_hat) * update_mask * grad_z


def reconstruction_guided_denoiser(denoise_vjp, observation, w_r):
    """denoise_fn(z, λ) -> x̃ of Eq. 7/8: x̂ from the model, then the reconstruction-guidance step.

    w_r = 0 gives the plain model, i.e. the replacement method once z^a is replaced.
    """

    def guided(z, logsnr):
        x_hat, vjp = denoise_vjp(z, logsnr)
        grad_z = vjp(reconstruction_loss_cotangent(x_hat, observation))
        return reconstruction_guided_x(x_hat, grad_z, logsnr, w_r, observation.update_mask(x_hat))

    return guided


def with_jax_vjp(denoise_fn):
    """denoise_vjp from a jax-traceable denoise_fn(z, λ), by `jax.vjp` (reference on jax.numpy)."""
    import jax

    def denoise_vjp(z, logsnr):
        x_hat, vjp = jax.vjp(lambda z_: denoise_fn(z_, logsnr), z)
        return x_hat, lambda g: vjp(g)[0]

    return denoise_vjp
