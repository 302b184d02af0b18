"""Detectors: calibration to a false-positive rate, scores, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import data
from advjax import defenses as d


@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.2])
def test_calibration_meets_fpr_on_held_out_synthetic(fpr):
    det = d.Detector("abs", lambda x: jnp.abs(x[:, 0]) + 0.1 * x[:, 1])
    x = jax.random.normal(jax.random.key(0), (40000, 2))
    det = d.calibrate(det, x[:20000], fpr=fpr)
    assert abs(d.false_positive_rate(det, x[20000:]) - fpr) <= 0.01


def test_calibration_meets_fpr_on_held_out_mnist(linear_mnist):
    """Calibrate on 2,250 clean images, check on 2,250 others (i.i.d. split, none trained on).

    The held-out rate is a sample: its standard error is about 0.6 points here.
    """
    f, x_test, _ = linear_mnist
    train_set = data.load_embedded_mnist("train")
    x_pool = np.concatenate([np.asarray(data.to_device(train_set.images[1::2])), x_test])
    x_pool = x_pool[np.random.default_rng(0).permutation(len(x_pool))]
    x_cal, x_held = x_pool[:2250], x_pool[2250:]
    detectors = [
        d.confidence_detector(f),
        d.entropy_detector(f),
        d.feature_squeezing_detector(f),
        d.mahalanobis_detector(  # fitted on the model's training images
            f, np.asarray(data.to_device(train_set.images[::2])), train_set.labels[::2]
        ),
    ]
    for det in detectors:
        calibrated = d.calibrate(det, x_cal, fpr=0.05)
        assert calibrated.threshold is not None and calibrated.fpr == 0.05
        held_out = d.false_positive_rate(calibrated, x_held)
        assert abs(held_out - 0.05) <= 0.01, (det.name, held_out)


def test_detector_scores_are_sensible(linear_mnist):
    f, x, y = linear_mnist
    noise = jax.random.uniform(jax.random.key(0), (200, 28, 28, 1))
    det = d.mahalanobis_detector(f, x[:1000], y[:1000])
    assert float(jnp.median(det.scores(noise))) > float(jnp.median(det.scores(x[:200])))
    # Feature squeezing: binary images are fixed points of the 1-bit squeezer.
    binary = jnp.round(jnp.asarray(x[:50]))
    fs = d.feature_squeezing_detector(f, [d.bit_depth(1)])
    np.testing.assert_allclose(fs.scores(binary), 0.0, atol=1e-6)
    # its adaptive score has the same values and a gradient
    np.testing.assert_allclose(fs.attack_score_fn(x[:8]), fs.scores(x[:8]), atol=1e-5)
    assert float(jnp.abs(jax.grad(lambda z: fs.attack_score_fn(z).sum())(x[:8])).sum()) > 0


def test_layer_features_and_hidden_mahalanobis(linear_mnist):
    from advjax import models

    _, x, y = linear_mnist
    model = models.get_model("fast_mnist")
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    features = d.layer_features(model, variables, "fc1")
    h = jax.jit(features)(x[:4])
    assert h.shape == (4, 100)
    # fc1 is the Dense layer before the ReLU: its output is the pre-activation
    conv_out = d.layer_features(model, variables, "conv2")(x[:4])
    assert conv_out.shape == (4, 7 * 7 * 32)
    expected = jax.nn.relu(conv_out) @ variables["params"]["fc1"]["kernel"]
    np.testing.assert_allclose(h, expected + variables["params"]["fc1"]["bias"], atol=1e-4)
    assert float(jnp.abs(jax.grad(lambda z: features(z).sum())(x[:2])).sum()) > 0
    det = d.mahalanobis_detector(features, x[:1000], y[:1000], name="mahalanobis (fc1)")
    assert det.name == "mahalanobis (fc1)"
    noise = jax.random.uniform(jax.random.key(1), (100, 28, 28, 1))
    assert float(jnp.median(det.scores(noise))) > float(jnp.median(det.scores(x[1000:1100])))
    with pytest.raises(ValueError, match="no layer 'fc9'.*fc1"):
        d.layer_features(model, variables, "fc9")(x[:1])
    with pytest.raises(ValueError, match="layer"):
        d.layer_features(model, variables, "")


@pytest.mark.slow
def test_autoencoder_reconstruction_detector(linear_mnist):
    _, x, _ = linear_mnist
    ae = d.train_autoencoder(x[:200], key=jax.random.key(0), epochs=2, batch_size=50)
    det = d.reconstruction_detector(ae)
    noise = jax.random.uniform(jax.random.key(1), (50, 28, 28, 1))
    assert float(det.scores(noise).mean()) > 1.5 * float(det.scores(x[500:550]).mean())


def test_errors():
    det = d.confidence_detector(lambda x: x)
    x = jnp.zeros((10, 3))
    for fpr in (0.0, 1.0, -0.1, 1.5, True):
        with pytest.raises(ValueError, match="fpr"):
            d.calibrate(det, x, fpr=fpr)
    with pytest.raises(ValueError, match="not calibrated"):
        det.flags(x)
    with pytest.raises(ValueError, match="deterministic"):
        d.feature_squeezing_detector(lambda x: x, [d.gaussian_noise(0.1)])
    with pytest.raises(ValueError, match="no fitting example"):
        d.mahalanobis_detector(lambda x: x, x, jnp.zeros(10, int), num_classes=2)
