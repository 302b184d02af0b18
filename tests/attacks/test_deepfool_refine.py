"""DeepFool's optional line search: still adversarial, never larger, close to the boundary."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import attacks as A

KEY = jax.random.key(0)


def _two_layer(key):
    k1, k2 = jax.random.split(key)
    w1 = jax.random.normal(k1, (16, 32)) / 4
    w2 = jax.random.normal(k2, (32, 4)) / 4
    return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("use_jit", [False, True])
def test_refined_deepfool_is_adversarial_and_no_larger(norm, use_jit):
    logits_fn = _two_layer(jax.random.key(1))
    x = jax.random.uniform(jax.random.key(2), (12, 16))
    y = jnp.argmax(logits_fn(x), -1)
    plain, refined = (
        A.deepfool(norm=norm, overshoot=0.5),
        A.deepfool(norm=norm, overshoot=0.5, refine_steps=12),
    )
    if use_jit:
        plain, refined = (jax.jit(a, static_argnums=0) for a in (plain, refined))
    x_plain = plain(logits_fn, x, y, key=KEY)
    x_refined = refined(logits_fn, x, y, key=KEY)
    fooled_plain = np.asarray(jnp.argmax(logits_fn(x_plain), -1) != y)
    fooled_refined = np.asarray(jnp.argmax(logits_fn(x_refined), -1) != y)
    assert fooled_plain.any()
    np.testing.assert_array_equal(fooled_refined, fooled_plain)
    size = A.get_threat_model(norm).norm
    sizes_plain, sizes_refined = np.asarray(size(x_plain - x)), np.asarray(size(x_refined - x))
    assert np.all(sizes_refined <= sizes_plain + 1e-6)
    # a large overshoot leaves room: the line search must take most of it back
    assert np.median(sizes_refined[fooled_plain]) < 0.9 * np.median(sizes_plain[fooled_plain])
    assert float(x_refined.min()) >= 0.0 and float(x_refined.max()) <= 1.0


def test_refined_deepfool_lands_on_a_linear_boundary():
    """For a linear model the closest misclassified point on the segment is the boundary."""

    def logits_fn(x):  # class 0 where x_0 + x_1 > 1
        return jnp.stack([x.sum(-1) - 1.0, 1.0 - x.sum(-1)], axis=-1)

    x = jnp.array([[0.3, 0.4]])
    y = jnp.argmax(logits_fn(x), -1)
    x_adv = A.deepfool(overshoot=1.0, refine_steps=30)(logits_fn, x, y, key=KEY)
    assert int(jnp.argmax(logits_fn(x_adv), -1)[0]) != int(y[0])
    assert abs(float(x_adv.sum()) - 1.0) < 1e-5


def test_refine_steps_must_be_a_non_negative_int():
    with pytest.raises(ValueError, match="refine_steps"):
        A.deepfool(refine_steps=-1)
