"""The schedules that replaced duplicates give the values of the code they replaced."""

import numpy as np
import optax

from advjax import train


def _former_quickstart_triangular(peak, total_steps):
    """advjax/_quickstart.py's triangular_schedule before it became train.triangular_lr."""
    rise = max(int(0.4 * total_steps), 1)
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, peak, rise),
            optax.linear_schedule(peak, 0.0, total_steps - rise),
        ],
        [rise],
    )


def _former_ramp_schedule(start, end, warmup_steps, ramp_steps, shape):
    """certify.ramp_schedule's formula before it became train.epsilon_ramp(initial=...)."""

    def schedule(step):
        t = np.clip((np.float32(step) - warmup_steps) / np.float32(max(ramp_steps, 1)), 0, 1)
        if ramp_steps == 0:
            t = np.float32(step >= warmup_steps)
        if shape == "smooth":
            t = t * t * (3 - 2 * t)
        return start + (end - start) * t

    return schedule


def test_quickstart_learning_rate_unchanged_for_its_configurations():
    # 5,000 embedded images: batch 100 (the default) or 50, 125, 200 give 50, 100, 40,
    # 25 steps per epoch; 0.4 x total is an integer, where int() and round() agree.
    for steps_per_epoch in (50, 100, 40, 25):
        for epochs in (1, 2, 12, 20):
            total = steps_per_epoch * epochs
            new = train.triangular_lr(5e-3, total, peak_at=0.4)
            old = _former_quickstart_triangular(5e-3, total)
            for t in range(total + 2):
                assert float(new(t)) == float(old(t)), (total, t)


def test_epsilon_ramp_reproduces_the_former_ramp_schedule():
    for shape in ("linear", "smooth"):
        for start, end in ((0.0, 0.4), (1.0, 0.5), (1.0, 0.0)):
            for warmup, ramp in ((10, 20), (0, 4), (5, 0)):
                new = train.epsilon_ramp(end, ramp, start_step=warmup, kind=shape, initial=start)
                old = _former_ramp_schedule(start, end, warmup, ramp, shape)
                for t in range(40):
                    np.testing.assert_allclose(float(new(t)), float(old(t)), atol=1e-6)
