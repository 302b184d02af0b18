"""The quick start: adversarially train a small MNIST CNN, attack it, and report.

Everything runs offline on the MNIST subset embedded in the package: 5,000
training images and the first 2,000 official test images.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np
import optax

from advjax import data, evaluation, models, parallel, train
from advjax.attacks import fgsm, pgd
from advjax.runs import render_run, save_run_model


@dataclasses.dataclass
class QuickstartConfig:
    """The quick start's recipe; every field is a command-line flag.

    The defaults follow the PGD adversarial training of Madry et al. (2018) on
    the fast-adversarial-training MNIST net of Wong et al. (2020), shortened to
    fit a laptop: PGD-``train_steps`` (step 0.05) at eps 0.3, ramped up over the
    first 30% of training, Adam with a triangular learning rate peaking at 5e-3
    (Wong et al.'s MNIST setting; at 1e-3 this net underfits: 93% clean, 52%
    robust after 20 epochs). Evaluation: FGSM and PGD-``eval_steps`` with
    ``eval_restarts`` restarts and the step size ``2.5 * eps / steps``; for a
    stronger estimate run ``advjax eval RUN --attack autoattack`` on the run directory.
    """

    out: str = "runs/quickstart"
    model: str = "fast_mnist"
    epochs: int = 12
    batch_size: int = 100
    learning_rate: float = 5e-3
    train_eps: float = 0.3
    train_steps: int = 10
    train_step_size: float = 0.05
    ramp_fraction: float = 0.3
    eval_epsilons: tuple[float, ...] = (0.1, 0.2, 0.3)
    eval_steps: int = 20
    eval_restarts: int = 5
    eval_step_size: float | None = None  # None: 2.5 * eps / eval_steps (Madry et al.)
    eval_examples: int = 2000
    seed: int = 0
    progress: bool = True


def _training_objective(config: QuickstartConfig, total_steps: int) -> train.Objective:
    epsilon = optax.linear_schedule(0.0, config.train_eps, int(config.ramp_fraction * total_steps))
    step_ratio = config.train_step_size / config.train_eps

    def make_attack(eps):
        return pgd(eps, steps=config.train_steps, step_size=step_ratio * eps, keep_best=False)

    return train.pgd_at(make_attack, epsilon)


def _held_out_eval(x_val, y_val, config: QuickstartConfig):
    """Cheap per-epoch check: clean and PGD-10 accuracy at the training budget."""
    attack = pgd(config.train_eps, steps=10, step_size=config.train_eps / 4)

    @jax.jit
    def accuracies(state):
        logits_fn = train.eval_logits(state)
        x_adv = attack(logits_fn, x_val, y_val, key=jax.random.key(0))
        return (
            train.accuracy(logits_fn(x_val), y_val),
            train.accuracy(logits_fn(x_adv), y_val),
        )

    def eval_fn(state):
        clean, adv = accuracies(state)
        return {"clean_acc": float(clean), "adv_acc": float(adv)}

    return eval_fn


def _devices_line() -> str:
    count = jax.local_device_count()
    kind = jax.default_backend().upper()
    return f"data-parallel over {count} {kind} devices" if count > 1 else f"on one {kind} device"


def run_quickstart(config: QuickstartConfig) -> evaluation.RobustnessReport:
    """Trains, checkpoints, evaluates and writes the report; returns the report.

    Example:
      >>> # run_quickstart(QuickstartConfig(epochs=1, eval_examples=100))
      >>> # or from a shell: python -m advjax quickstart --epochs 1 --eval-examples 100
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    train_set = data.load_embedded_mnist("train")
    test_set = data.load_embedded_mnist("test")
    n_eval = min(config.eval_examples, len(test_set))
    key = jax.random.key(config.seed)
    init_key, train_key, eval_key = jax.random.split(key, 3)

    model = models.get_model(config.model)
    variables = models.init_model(model, init_key, train_set.image_shape)
    steps_per_epoch = data.num_batches(len(train_set), config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    state = train.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats"),
        tx=optax.adam(train.triangular_lr(config.learning_rate, total_steps, peak_at=0.4)),
    )
    step = train.make_step(_training_objective(config, total_steps))
    # Monitoring only: the per-epoch check never selects the model (the last epoch's
    # parameters are evaluated), so it may share images with the final evaluation.
    x_val = data.to_device(test_set.images[-500:])
    y_val = np.asarray(test_set.labels[-500:], np.int32)
    if (mesh := parallel.default_mesh()) is not None:  # split like fit's batches
        split = parallel.batch_sharding(parallel.sub_mesh(mesh, len(y_val)))
        x_val, y_val = jax.device_put((x_val, y_val), split)
    print(
        f"advjax quickstart: training {config.model} with PGD-{config.train_steps} "
        f"(eps {config.train_eps}) on {len(train_set)} embedded MNIST images, "
        f"{config.epochs} epochs, {_devices_line()}",
        flush=True,
    )
    result = train.fit(
        state,
        train_set,
        step,
        epochs=config.epochs,
        batch_size=config.batch_size,
        key=train_key,
        eval_fn=_held_out_eval(x_val, y_val, config),
        checkpoint_dir=out / "checkpoints",
        metrics_path=out / "metrics.jsonl",
        progress=config.progress,
    )
    trained = result.state.variables()
    save_run_model(
        out,
        trained,
        model_name=config.model,
        input_shape=train_set.image_shape,
        extra={
            "dataset": {"name": "mnist-embedded", "train_images": len(train_set)},
            "num_classes": int(train_set.num_classes),
            "threat": {"norm": "linf", "eps": config.train_eps},
            "recipe": {"name": "quickstart", "config": dataclasses.asdict(config)},
            "seed": config.seed,
            "trained": {"seconds": round(result.train_seconds, 1), "stopped": None},
        },
    )

    logits_fn = models.eval_logits_fn(model, trained)
    x_test = np.asarray(data.to_device(test_set.images[:n_eval]))
    y_test = test_set.labels[:n_eval]
    attacks = {
        "fgsm": lambda eps: fgsm(eps),
        f"pgd{config.eval_steps}x{config.eval_restarts}": lambda eps: pgd(
            eps,
            steps=config.eval_steps,
            step_size=config.eval_step_size,
            restarts=config.eval_restarts,
        ),
    }
    print(
        f"evaluating on {n_eval} embedded test images at eps {list(config.eval_epsilons)}",
        flush=True,
    )
    started = time.perf_counter()
    report = evaluation.evaluate(
        logits_fn, x_test, y_test, attacks, config.eval_epsilons, key=eval_key, norm="linf"
    )
    report.meta = {
        "model": config.model,
        "train_seconds": round(result.train_seconds, 1),
        "eval_seconds": round(time.perf_counter() - started, 1),
        "data": "embedded MNIST subset: 5,000 training images, first "
        f"{n_eval} official test images",
        "recipe": dataclasses.asdict(config),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": jax.local_device_count(),
    }
    evaluation.write_report(report, out, title="advjax quick start")
    print(f"\nclean accuracy {100 * report.clean_accuracy:.2f}% on {n_eval} test images")
    print(evaluation.format_table(report))
    print(
        f"\ntrain {report.meta['train_seconds']} s, eval {report.meta['eval_seconds']} s; "
        f"report: {out / 'report.md'}; load the model with advjax.load_run({str(out)!r})"
    )
    (out / "summary.json").write_text(json.dumps(report.meta, indent=2) + "\n")
    render_run(out)  # index.md and training_curves.png
    return report
