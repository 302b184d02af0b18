"""One process of the two-process test in test_multi_host.py (2 CPU devices each).

python tests/parallel/_multi_host_worker.py PROCESS_ID PORT OUT.npz
"""

from __future__ import annotations

import os
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import advjax  # noqa: E402
from advjax import models, parallel, train  # noqa: E402

N = 8  # 4 per process, 2 per device: no padding, so rows match one device exactly


def main() -> None:
    process_id, port, out_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    index, count = parallel.initialize_distributed(f"localhost:{port}", 2, process_id)
    mesh = parallel.make_mesh()
    rng = np.random.default_rng(0)
    x = rng.random((N, 4, 4, 1), dtype=np.float32)
    y = (np.arange(N) % 10).astype(np.int32)
    mine = parallel.host_slice(N)
    model = models.get_model("mlp", hidden=(8,))
    variables = models.init_model(model, jax.random.key(0), (4, 4, 1))
    logits_fn = models.eval_logits_fn(model, variables)

    attack = advjax.pgd(0.2, steps=3)
    x_adv = parallel.sharded_attack(attack, mesh)(
        logits_fn, x[mine], y[mine], key=jax.random.key(1)
    )
    on_one_device = jax.device_put((x, y), jax.local_devices()[0])
    reference = jax.jit(attack, static_argnums=0)(logits_fn, *on_one_device, key=jax.random.key(1))

    def fresh_state():
        return train.TrainState.create(
            apply_fn=model.apply, params=variables["params"], tx=optax.sgd(0.1)
        )

    step = train.make_step(train.standard(), jit=False)
    reference_state, _ = jax.jit(step)(
        jax.device_put(fresh_state(), jax.local_devices()[0]), on_one_device, jax.random.key(2)
    )
    batch, _ = parallel.shard_batch((x[mine], y[mine]), parallel.batch_sharding(mesh))
    state = parallel.shard_train_state(fresh_state(), mesh)
    state, _ = parallel.sharded_step(step, mesh)(state, batch, jax.random.key(2))
    kernel = np.asarray(state.params["Dense_0"]["kernel"].addressable_data(0))
    np.savez(
        out_path,
        index=index,
        count=count,
        devices=jax.device_count(),
        x_adv=np.asarray(x_adv),
        reference=np.asarray(reference)[mine],
        kernel=kernel,
        reference_kernel=np.asarray(reference_state.params["Dense_0"]["kernel"]),
    )
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
