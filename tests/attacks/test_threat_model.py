"""A threat model defined outside the package runs end to end through the generic attacks.

The model is a per-pixel weighted Linf ball ``{delta : |delta_i| <= eps * w_i}``
built with the public :class:`advjax.ThreatModel` constructor. Its norm is
``max_i |delta_i| / w_i`` (so the guard's ``norm(delta) <= eps`` is exactly the
constraint), its steepest-ascent direction ``w * sign(grad)`` and its
projection a per-coordinate clip.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advjax
from advjax import attacks as A
from advjax.attacks._guard import Constraints, guarded, verify

D = 8
WEIGHTS = jnp.array([1.0, 0.5, 0.25, 0.1, 1.0, 0.75, 0.2, 0.6])
EPS = 0.2
TINY = 1e-6
KEY = jax.random.key(0)


def _per_example(eps, like):
    eps = jnp.asarray(eps, like.dtype)
    return eps.reshape(eps.shape + (1,) * (like.ndim - eps.ndim))


def weighted_linf(weights: jax.Array) -> advjax.ThreatModel:
    """The ball ``|delta_i| <= eps * weights_i``, weights in ``(0, 1]`` shaped like one example."""

    def norm(delta):
        return jnp.max(jnp.abs(delta / weights).reshape(delta.shape[0], -1), axis=-1)

    def project(delta, eps):
        bound = _per_example(eps, delta) * weights
        return jnp.clip(delta, -bound, bound)

    def random_init(key, shape, eps):
        unit = jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
        return unit * _per_example(eps, unit) * weights

    return advjax.ThreatModel(
        name="weighted_linf",
        norm=norm,
        project=project,
        direction=lambda grad: weights * jnp.sign(grad),
        random_init=random_init,
        dual_norm=lambda w: jnp.sum(jnp.abs(w * weights).reshape(w.shape[0], -1), axis=-1),
    )


WEIGHTED = weighted_linf(WEIGHTS)

# A linear 2-class model: the margin z_0 - z_1 = v . x + b. The strongest move in the
# weighted ball lowers it by eps * sum_i w_i |v_i| (the box does not bind from x = 0.5).
V = jnp.array([1.0, -2.0, 3.0, -4.0, 0.5, 1.5, -2.5, 1.0])
W_MODEL = jnp.stack([V / 2, -V / 2], axis=-1)
X = jnp.full((6, D), 0.5)
WEIGHTED_REACH = EPS * float(jnp.sum(WEIGHTS * jnp.abs(V)))
PLAIN_REACH = EPS * float(jnp.sum(jnp.abs(V)))
# Clean margins: three inside the weighted reach (must break), three between the
# weighted and the plain Linf reach (breakable in the plain ball, not in this one).
MARGINS = (
    jnp.array([0.3, 0.6, 0.85] + [1.15, 1.5, 0.95 * PLAIN_REACH / WEIGHTED_REACH]) * WEIGHTED_REACH
)
BIAS = MARGINS - X @ V
SHOULD_BREAK = np.array([True, True, True, False, False, False])


def _logits_fn(x):
    return x @ W_MODEL + jnp.stack([BIAS / 2, -BIAS / 2], axis=-1)


Y = jnp.zeros(6, jnp.int32)


def test_the_model_is_set_up_as_described():
    assert bool(jnp.all(jnp.argmax(_logits_fn(X), -1) == 0))
    assert 1.15 * WEIGHTED_REACH < 0.95 * PLAIN_REACH  # the second group is plain-breakable
    assert float(jnp.max(EPS * WEIGHTS)) < 0.5  # the box never binds from x = 0.5


ATTACKS = {
    "pgd": lambda: advjax.pgd(EPS, steps=20, norm=WEIGHTED),
    "pgd_restarts": lambda: advjax.pgd(EPS, steps=10, restarts=2, norm=WEIGHTED),
    "apgd": lambda: advjax.apgd(EPS, steps=20, norm=WEIGHTED),
    "apgd_cw": lambda: advjax.apgd(EPS, steps=20, norm=WEIGHTED, loss="cw"),
    "fgsm": lambda: advjax.fgsm(EPS, norm=WEIGHTED),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_generic_attacks_respect_the_weighted_ball_and_break_exactly_what_they_can(name):
    x_adv = ATTACKS[name]()(_logits_fn, X, Y, key=KEY)
    delta = np.asarray(x_adv - X)
    assert np.all(np.isfinite(delta))
    assert np.all(np.abs(delta) <= EPS * np.asarray(WEIGHTS) + TINY)
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    broken = np.asarray(jnp.argmax(_logits_fn(x_adv), -1) != Y)
    np.testing.assert_array_equal(broken, SHOULD_BREAK)
    # The attack used its room: on examples it cannot break, the margin falls by
    # most of the weighted reach (the best move is the corner eps * w * sign(-v)).
    margin_drop = np.asarray(MARGINS - (x_adv @ V + BIAS))
    assert np.all(margin_drop[~SHOULD_BREAK] >= 0.95 * WEIGHTED_REACH)


def test_fgsm_takes_the_exact_weighted_corner():
    x_adv = advjax.fgsm(EPS, norm=WEIGHTED)(_logits_fn, X, Y, key=KEY)
    expected = X - EPS * WEIGHTS * jnp.sign(V)  # descends the margin of class 0
    np.testing.assert_allclose(np.asarray(x_adv), np.asarray(expected), atol=1e-6)


def test_random_start_stays_in_the_weighted_ball():
    x_adv = advjax.pgd(EPS, steps=0, norm=WEIGHTED)(_logits_fn, X, Y, key=KEY)
    delta = np.asarray(x_adv - X)
    assert np.all(np.abs(delta) <= EPS * np.asarray(WEIGHTS) + TINY)
    assert np.any(np.abs(delta) > 0)


def test_the_guard_projects_with_the_custom_threat_model():
    escape = lambda logits_fn, x, y, *, key: x + 0.3  # noqa: E731  leaves the ball
    attack = guarded(escape, name="escape", eps=EPS, norm=WEIGHTED, clip_min=0.0, clip_max=1.0)
    x_adv = attack(_logits_fn, X, Y, key=KEY)
    np.testing.assert_allclose(
        np.asarray(x_adv - X), np.broadcast_to(EPS * WEIGHTS, X.shape), atol=1e-7
    )
    inside_plain_linf = X + 0.9 * EPS  # inside the plain Linf ball, outside the weighted one
    checks = verify(X, inside_plain_linf, Constraints(WEIGHTED, EPS, 0.0, 1.0))
    assert bool(jnp.all(checks["outside_ball"]))
    assert attack.constraints.threat is WEIGHTED


@pytest.mark.parametrize(
    "build, attack",
    [
        (lambda: A.square(EPS, norm=WEIGHTED), "square"),
        (lambda: A.fab(EPS, norm=WEIGHTED), "fab"),
        (lambda: A.deepfool(EPS, norm=WEIGHTED), "deepfool"),
    ],
)
def test_per_norm_attacks_refuse_the_custom_model_clearly(build, attack):
    with pytest.raises(ValueError) as info:
        build()
    message = str(info.value)
    assert f"{attack} has no update for threat model 'weighted_linf'" in message
    assert "supported: ['linf', 'l2']" in message
    assert "accept any ThreatModel" in message


def test_per_norm_tables_match_the_ball_not_the_name():
    impostor = dataclasses.replace(WEIGHTED, name="linf")  # a linf name, another ball
    assert impostor != A.linf
    with pytest.raises(ValueError, match="square has no update for threat model 'linf'"):
        A.square(EPS, norm=impostor)
    # Another start inside the same ball is still that ball.
    gaussian_start = dataclasses.replace(A.linf, random_init=lambda k, s, e: jnp.zeros(s))
    assert gaussian_start == A.linf and hash(gaussian_start) == hash(A.linf)
    A.square(EPS, norm=gaussian_start, queries=2)  # builds


def test_unknown_norm_lists_the_registry():
    with pytest.raises(ValueError, match=r"choose one of \['linf', 'l2', 'l1', 'l0'\]"):
        A.get_threat_model("l7")


def test_box_projection_is_the_one_field_attacks_use():
    assert not hasattr(A.ThreatModel, "project_in_box")
    delta = jnp.array([[0.5, -0.5, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0]])
    out = WEIGHTED.box_project(delta, EPS, -0.1, 1.0)
    expected = jnp.clip(jnp.clip(delta, -EPS * WEIGHTS, EPS * WEIGHTS), -0.1, 1.0)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    x = jnp.full((1, D), 0.05)
    projected = A.project_to_threat(WEIGHTED, x, x + delta, EPS, 0.0, 1.0)
    np.testing.assert_allclose(np.asarray(projected - x), np.asarray(out).clip(-0.05), atol=1e-7)
