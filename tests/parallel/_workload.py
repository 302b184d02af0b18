"""An attack, an evaluation and training steps, run unsharded or sharded over all devices.

``test_multi_device.py`` runs it in the test process (one CPU device, plain
``jax.jit`` code) and as a script in a child process started with
``--xla_force_host_platform_device_count=8`` (the ``advjax.parallel`` path),
then compares the two.

    python tests/parallel/_workload.py PARAMS.msgpack OUT.npz sharded,defaults
"""

from __future__ import annotations

import sys

import jax
import numpy as np
import optax
from flax import serialization

import advjax
from advjax import data, models, parallel, train

HIDDEN = 64
N_ATTACK = 20  # not a multiple of 8: the sharded attack pads and cuts
N_EVAL = 40
EVAL_BATCH = 16  # the last batch is padded by evaluate itself
TRAIN_BATCH = 16
TRAIN_STEPS = 3
EPSILONS = [0.05, 0.1, 0.2]


def model():
    return models.get_model("mlp", hidden=(HIDDEN,))


def examples():
    test = data.load_embedded_mnist("test")
    return np.asarray(test.images[:64], np.float32) / 255.0, test.labels[:64].astype(np.int32)


def pretrained_params():
    """The MLP with its output layer fitted by ridge regression on its random hidden features.

    No JAX at all: ~80% clean accuracy in a fraction of a
    second, so clean and robust counts are not all 0.
    """
    rng = np.random.default_rng(0)
    kernel = rng.normal(0.0, 784**-0.5, (784, HIDDEN)).astype(np.float32)
    params = {"Dense_0": {"kernel": kernel, "bias": np.zeros(HIDDEN, np.float32)}}
    train_set = data.load_embedded_mnist("train")
    images = np.asarray(train_set.images, np.float32).reshape(len(train_set.images), -1) / 255.0
    hidden = np.maximum(images @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"], 0.0)
    features = np.concatenate([hidden, np.ones((len(hidden), 1), np.float32)], axis=1)
    targets = np.eye(10, dtype=np.float32)[train_set.labels]
    gram = features.T @ features + 1e-2 * np.eye(features.shape[1], dtype=np.float32)
    solution = np.linalg.solve(gram, features.T @ targets).astype(np.float32)
    params["Dense_1"] = {"kernel": solution[:-1], "bias": solution[-1]}
    return params


def run(params, sharded: bool) -> dict[str, np.ndarray]:
    """The workload's results; ``sharded`` uses ``advjax.parallel`` over all devices."""
    net = model()
    logits_fn = models.eval_logits_fn(net, {"params": params})
    x, y = examples()
    mesh = parallel.make_mesh() if sharded else None
    out = {"devices": np.asarray(len(jax.devices()))}

    attack = advjax.pgd(0.1, steps=10, restarts=2)
    if sharded:
        x_adv = parallel.sharded_attack(attack, mesh)(
            logits_fn, x[:N_ATTACK], y[:N_ATTACK], key=jax.random.key(2)
        )
        out["attack_devices"] = np.asarray(len(x_adv.sharding.device_set))
    else:
        x_adv = jax.jit(attack, static_argnums=0)(
            logits_fn, x[:N_ATTACK], y[:N_ATTACK], key=jax.random.key(2)
        )
    out["x_adv"] = np.asarray(x_adv)

    report = advjax.evaluate(
        logits_fn,
        x[:N_EVAL],
        y[:N_EVAL],
        {"pgd": lambda e: advjax.pgd(e, steps=5)},
        EPSILONS,
        key=jax.random.key(3),
        batch_size=EVAL_BATCH,
        diagnostics=False,
        sharding=parallel.batch_sharding(mesh) if sharded else None,
    )
    out["clean_count"] = np.asarray(round(report.clean_accuracy * N_EVAL))
    out["robust_counts"] = np.rint(
        np.array([r.robust_accuracy for r in report.attacks]) * N_EVAL
    ).astype(int)

    objective = train.pgd_at(lambda e: advjax.pgd(e, steps=3, keep_best=False), 0.1)
    # Unsharded, both variants are the same computation: run it once.
    for shard_params in (False, True) if sharded else (False,):
        state = train.TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(1e-3))
        step = train.make_step(objective)
        if sharded:
            state = parallel.shard_train_state(
                state, mesh, shard_params=shard_params, min_size=1000
            )
            step = parallel.sharded_step(step, mesh)
        losses = []
        for i in range(TRAIN_STEPS):
            rows = slice(TRAIN_BATCH * i, TRAIN_BATCH * (i + 1))
            state, metrics = step(state, (x[rows], y[rows]), jax.random.key(4))
            losses.append(float(metrics["loss"]))
        results = {"losses": np.asarray(losses)}
        for path, leaf in jax.tree_util.tree_flatten_with_path(state.params)[0]:
            results[f"param{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
        kernel = state.params["Dense_0"]["kernel"]
        for tag in ("fsdp",) if shard_params else ("dp",) if sharded else ("dp", "fsdp"):
            out.update({f"{tag}_{name}": value for name, value in results.items()})
            if sharded:
                out[f"{tag}_kernel_shards"] = np.asarray(len(kernel.addressable_shards))
                out[f"{tag}_kernel_shard_rows"] = np.asarray(
                    kernel.addressable_shards[0].data.shape[0]
                )
    return out


def defaults(params) -> dict[str, np.ndarray]:
    """``fit``, ``evaluate`` and ``autoattack`` given no mesh: data-parallel over every device.

    On one device this is the plain single-device computation; a child process
    started with several CPU devices runs the same calls and must agree.
    """
    net = model()
    logits_fn = models.eval_logits_fn(net, {"params": params})
    x, y = examples()
    mesh = parallel.default_mesh()
    out = {"default_mesh_size": np.asarray(0 if mesh is None else mesh.size)}
    report = advjax.evaluate(
        logits_fn,
        x[:N_EVAL],
        y[:N_EVAL],
        {"pgd": lambda e: advjax.pgd(e, steps=5, restarts=2)},
        EPSILONS,
        key=jax.random.key(3),
        batch_size=EVAL_BATCH,
        diagnostics=False,
    )
    out["clean_count"] = np.asarray(round(report.clean_accuracy * N_EVAL))
    out["robust_counts"] = np.rint(
        np.array([r.robust_accuracy for r in report.attacks]) * N_EVAL
    ).astype(int)
    found = advjax.evaluation.autoattack(
        logits_fn,
        x[:N_EVAL],
        y[:N_EVAL],
        eps=0.1,
        key=jax.random.key(5),
        version="custom",
        attacks={"apgd-ce": advjax.apgd(0.1, steps=10)},
        batch_size=EVAL_BATCH,
        diagnostics=False,
    )
    out["aa_robust"] = np.asarray(found.robust)
    out["aa_x_adv"] = np.asarray(found.x_adv)
    train_set = data.Dataset(
        (x[: 3 * TRAIN_BATCH] * 255).round().astype(np.uint8), y[: 3 * TRAIN_BATCH], "mnist", 10
    )
    state = train.TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(1e-3))
    objective = train.pgd_at(lambda e: advjax.pgd(e, steps=3, keep_best=False), 0.1)
    result = train.fit(
        state,
        train_set,
        train.make_step(objective),
        epochs=1,
        batch_size=TRAIN_BATCH,
        key=jax.random.key(6),
        progress=False,
    )
    kernel = result.state.params["Dense_0"]["kernel"]
    out["fit_devices"] = np.asarray(len(kernel.sharding.device_set))
    for path, leaf in jax.tree_util.tree_flatten_with_path(result.state.params)[0]:
        out[f"fit_param{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    return out


def main() -> None:
    params_path, out_path, modes = sys.argv[1:4]
    with open(params_path, "rb") as f:
        params = serialization.msgpack_restore(f.read())
    results = {"devices": np.asarray(len(jax.devices()))}
    if "sharded" in modes.split(","):
        results.update(run(params, sharded=True))
    if "defaults" in modes.split(","):
        results.update({f"default_{k}": v for k, v in defaults(params).items()})
    np.savez(out_path, **results)


if __name__ == "__main__":
    main()
