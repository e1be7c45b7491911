"""The cosine schedule and α, σ identities of DESIGN.md's numerical contract (float64)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vdm_ref import schedule


def test_cosine_schedule_values_match_the_contract():
    t = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    expected = np.array([20.0, 1.7626187666, 0.0, -1.7626187666, -20.0])
    # float64: endpoints exact to rounding, interior values to the 10 digits the contract gives.
    np.testing.assert_allclose(schedule.logsnr_schedule_cosine(t), expected, rtol=0, atol=1e-9)


def test_schedule_is_strictly_decreasing_and_inverts():
    t = np.linspace(0.0, 1.0, 1001)
    lam = schedule.logsnr_schedule_cosine(t)
    assert np.all(np.diff(lam) < 0)
    np.testing.assert_allclose(schedule.t_from_logsnr_cosine(lam), t, atol=1e-12)


@given(st.floats(-30.0, -1.0), st.floats(1.0, 30.0), st.floats(0.0, 1.0))
def test_custom_range_endpoints_and_inverse(lo, hi, t):
    lam = schedule.logsnr_schedule_cosine(np.array([0.0, t, 1.0]), lo, hi)
    np.testing.assert_allclose([lam[0], lam[2]], [hi, lo], atol=1e-9)
    np.testing.assert_allclose(schedule.t_from_logsnr_cosine(lam[1:2], lo, hi), [t], atol=1e-9)


@given(st.floats(-40.0, 40.0))
def test_alpha_sigma_identities(lam):
    logsnr = np.array([lam])
    alpha, sigma = schedule.alpha_sigma(logsnr)
    np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.log(alpha**2 / sigma**2), logsnr, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(schedule.alpha_squared(logsnr), alpha**2, rtol=1e-14)
    np.testing.assert_allclose(schedule.sigma_squared(logsnr), sigma**2, rtol=1e-14)


def test_extreme_logsnr_is_finite():
    alpha, sigma = schedule.alpha_sigma(np.array([-800.0, 800.0]))
    assert np.all(np.isfinite(alpha)) and np.all(np.isfinite(sigma))
    np.testing.assert_allclose([alpha[1], sigma[0]], [1.0, 1.0])


def test_logsnr_grid_runs_from_t1_to_t0():
    grid = schedule.logsnr_grid(4)
    np.testing.assert_allclose(grid, schedule.logsnr_schedule_cosine(np.array([1.0, 0.75, 0.5, 0.25, 0.0])))


def test_bad_range_and_steps_are_clear_errors():
    with pytest.raises(ValueError, match="logsnr_min < logsnr_max"):
        schedule.logsnr_schedule_cosine(np.array([0.5]), 5.0, -5.0)
    with pytest.raises(ValueError, match="positive integer"):
        schedule.logsnr_grid(0)
