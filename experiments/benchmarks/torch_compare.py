"""advjax's jitted PGD-40 against PyTorch PGD-40 on the Madry CNN, side by side.

Same architecture and the same weights (ported from the Flax model, so both
compute the same logits), batch 128, the same CPU cores: the measuring process
is pinned to ``--threads`` cores (``os.sched_setaffinity``) and torch uses
that many intra-op threads. Timed in
one process, interleaved, medians compared:

* torch loop: a hand-written PyTorch PGD loop (random start, sign step,
  projection, clip), eager mode, ``torch.autograd.grad`` per step;
* torchattacks: ``torchattacks.PGD`` (if installed) with the same settings;
* advjax: ``jax.jit(advjax.pgd(0.3, steps=40, step_size=0.01))``, with the
  weights closed over (constants, as when a fixed model is evaluated) and
  with ``keep_best=False`` (the plain loop the torch code runs);
* the logits function is ``advjax.models.eval_logits_fn``'s default, which on
  CPU applies ``advjax.backend.fast_conv_grads`` (its convolutions keep
  XLA:CPU's fast kernel for the input gradient in the loop); the opt-out
  (``fast_conv_grads=False``) is timed too;
* advjax with the batch sharded over one XLA CPU device per core
  (``advjax.parallel.use_cpu_devices`` + ``sharded_attack``; with
  ``--threads`` >= 2 and not ``--no-sharded``): XLA's intra-op threads scale
  poorly to a second core on this model, per-device slices do not;
* one input gradient in each framework (and JAX's inside a ``fori_loop``,
  as in an attack), and each Madry CNN convolution's
  forward pass and input gradient (``conv2d_input`` in torch, the transposed
  convolution XLA emits in JAX), to see where the time goes.

On CPU each XLA configuration runs in a child process (XLA_FLAGS must be set
before JAX starts): XLA's default runtime, the legacy runtime
(``--xla_cpu_use_thunk_runtime=false``), and each
with oneDNN for dots and convolutions (``--xla_cpu_use_onednn=true``,
``--xla_cpu_experimental_onednn_custom_call=true``).

    python experiments/benchmarks/torch_compare.py [--batch 128] [--steps 40] [--repeats 3] \
        [--threads N] [--configs default legacy legacy_onednn] [--no-pieces] [--no-sharded]

Ratios are torch time / JAX time: above 1 means JAX is faster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from _torch_port import copy_flax_weights, torch_pgd

CONFIGS = {
    "default": "",
    "legacy": "--xla_cpu_use_thunk_runtime=false",
    "default_onednn": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "legacy_onednn": "--xla_cpu_use_thunk_runtime=false --xla_cpu_use_onednn=true "
    "--xla_cpu_experimental_onednn_custom_call=true",
}
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
EPS, STEP_SIZE = 0.3, 0.01


def _torch_madry_cnn(variables):
    """The Madry CNN in PyTorch (NCHW) with the Flax model's weights."""
    import torch
    from torch import nn

    class MadryCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
            self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
            self.fc1 = nn.Linear(7 * 7 * 64, 1024)
            self.fc2 = nn.Linear(1024, 10)

        def forward(self, x):
            x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
            x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
            x = x.permute(0, 2, 3, 1).flatten(1)  # NHWC order, as the Flax model flattens
            return self.fc2(torch.relu(self.fc1(x)))

    model = copy_flax_weights(MadryCNN().eval(), variables["params"])
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def measure(args) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    import advjax
    from advjax import data, losses, models, parallel

    torch.set_num_threads(args.threads)
    cores = sorted(os.sched_getaffinity(0))
    print(f"pinned to cores {cores} (both frameworks)", flush=True)
    model = models.get_model("madry_cnn")
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    logits_fn = models.eval_logits_fn(model, variables, fast_conv_grads=False)
    default_logits_fn = models.eval_logits_fn(model, variables)  # fast_conv_grads on CPU
    test_set = data.load_embedded_mnist("test")
    x_np = np.asarray(data.to_device(test_set.images[: args.batch]))
    y_np = test_set.labels[: args.batch].astype(np.int64)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np.astype(np.int32))
    x_t, y_t = torch.tensor(x_np.transpose(0, 3, 1, 2)), torch.tensor(y_np)
    torch_model = _torch_madry_cnn(variables)
    with torch.no_grad():
        gap = np.abs(torch_model(x_t).numpy() - np.asarray(logits_fn(x))).max()
    print(
        f"threads={args.threads} torch={torch.__version__} (intra-op threads "
        f"{torch.get_num_threads()}) jax={jax.__version__} XLA_FLAGS="
        f"{os.environ.get('XLA_FLAGS', '')!r}; max |logits torch - jax| = {gap:.1e}",
        flush=True,
    )

    key = jax.random.key(0)
    generator = torch.Generator().manual_seed(0)
    pgd_best = jax.jit(advjax.pgd(EPS, steps=args.steps, step_size=STEP_SIZE), static_argnums=0)
    pgd_plain = jax.jit(
        advjax.pgd(EPS, steps=args.steps, step_size=STEP_SIZE, keep_best=False), static_argnums=0
    )
    jax_grad = jax.jit(jax.grad(lambda xx: jnp.sum(losses.ce(logits_fn(xx), y))))

    def jax_loop_gradients(x):  # the input gradient as an attack computes it: in a loop
        def body(_, carry):
            return carry + jax.grad(lambda xx: jnp.sum(losses.ce(logits_fn(xx), y)))(x + carry)

        return jax.lax.fori_loop(0, args.steps, body, jnp.zeros_like(x))

    jax_loop = jax.jit(jax_loop_gradients)

    def torch_grad():
        xx = x_t.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(torch_model(xx), y_t, reduction="sum")
        return torch.autograd.grad(loss, xx)[0]

    runs = {
        "torch loop": lambda: torch_pgd(
            torch_model,
            x_t,
            y_t,
            eps=EPS,
            steps=args.steps,
            step_size=STEP_SIZE,
            generator=generator,
        ),
        "advjax pgd": lambda: pgd_best(default_logits_fn, x, y, key=key).block_until_ready(),
        "advjax pgd keep_best=False": lambda: pgd_plain(
            default_logits_fn, x, y, key=key
        ).block_until_ready(),
        "advjax pgd, fast_conv_grads=False": lambda: pgd_best(
            logits_fn, x, y, key=key
        ).block_until_ready(),
    }
    if jax.device_count() > 1:
        mesh = parallel.make_mesh()
        pgd_sharded = parallel.sharded_attack(
            advjax.pgd(EPS, steps=args.steps, step_size=STEP_SIZE), mesh
        )
        same = bool(
            jnp.array_equal(
                pgd_sharded(default_logits_fn, x, y, key=key),
                pgd_best(default_logits_fn, x, y, key=key),
            )
        )
        print(f"sharded over {jax.device_count()} CPU devices; same result as one: {same}")
        runs[f"advjax pgd, {jax.device_count()} CPU devices"] = lambda: pgd_sharded(
            default_logits_fn, x, y, key=key
        ).block_until_ready()
    try:
        import torchattacks

        attack = torchattacks.PGD(torch_model, eps=EPS, alpha=STEP_SIZE, steps=args.steps)
        runs["torchattacks.PGD"] = lambda: attack(x_t, y_t)
    except ImportError:
        print("torchattacks is not installed: skipped", flush=True)
    for fn in runs.values():  # compile / warm up
        fn()
    results = {name: [] for name in runs}
    for _ in range(args.repeats):  # interleaved
        for name, fn in runs.items():
            results[name].append(_median_ms(fn, 1))
    medians = {name: statistics.median(values) for name, values in results.items()}
    base = medians["torch loop"]
    for name, value in medians.items():
        print(
            f"  PGD-{args.steps} {name:28s} {value:8.0f} ms"
            f"   torch loop / this = {base / value:.2f}"
        )

    if args.no_pieces:
        return
    # Where the time goes: one input gradient, then each convolution's pieces.
    jax_grad(x).block_until_ready()
    torch_grad()
    pieces = {"input gradient": ([], [])}
    for _ in range(3 * args.repeats):
        pieces["input gradient"][0].append(_median_ms(torch_grad, 1))
        pieces["input gradient"][1].append(_median_ms(lambda: jax_grad(x).block_until_ready(), 1))
    for name, (height, c_in, c_out) in {"conv1": (28, 1, 32), "conv2": (14, 32, 64)}.items():
        xs = np.random.default_rng(0).random((args.batch, height, height, c_in), np.float32)
        gs = np.random.default_rng(1).random((args.batch, height, height, c_out), np.float32)
        w = np.asarray(variables["params"][name]["kernel"])
        numbers = ("NHWC", "HWIO", "NHWC")

        def conv(inputs, w=w, numbers=numbers):
            return jax.lax.conv_general_dilated(
                inputs, w, (1, 1), "SAME", dimension_numbers=numbers
            )

        forward = jax.jit(conv)
        backward = jax.jit(lambda inputs, g, conv=conv: jax.vjp(conv, inputs)[1](g)[0])
        xj, gj = jnp.asarray(xs), jnp.asarray(gs)
        xt, gt = torch.tensor(xs.transpose(0, 3, 1, 2)), torch.tensor(gs.transpose(0, 3, 1, 2))
        wt = torch.tensor(w.transpose(3, 2, 0, 1))
        torch_fwd = lambda xt=xt, wt=wt: torch.nn.functional.conv2d(xt, wt, padding=2)  # noqa: E731
        torch_bwd = lambda xt=xt, wt=wt, gt=gt: torch.nn.grad.conv2d_input(  # noqa: E731
            xt.shape, wt, gt, padding=2
        )
        jax_fwd = lambda f=forward, xj=xj: f(xj).block_until_ready()  # noqa: E731
        jax_bwd = lambda f=backward, xj=xj, gj=gj: f(xj, gj).block_until_ready()  # noqa: E731
        for fn in (torch_fwd, torch_bwd, jax_fwd, jax_bwd):
            fn()
        pieces[f"{name} forward"] = ([], [])
        pieces[f"{name} input gradient"] = ([], [])
        for _ in range(3 * args.repeats):
            pieces[f"{name} forward"][0].append(_median_ms(torch_fwd, 1))
            pieces[f"{name} forward"][1].append(_median_ms(jax_fwd, 1))
            pieces[f"{name} input gradient"][0].append(_median_ms(torch_bwd, 1))
            pieces[f"{name} input gradient"][1].append(_median_ms(jax_bwd, 1))
    jax_loop(x).block_until_ready()
    in_loop = statistics.median(
        _median_ms(lambda: jax_loop(x).block_until_ready(), 1) / args.steps
        for _ in range(args.repeats)
    )
    print(f"  jax input gradient inside a fori_loop: {in_loop:7.2f} ms per step")
    for name, (torch_times, jax_times) in pieces.items():
        t, j = statistics.median(torch_times), statistics.median(jax_times)
        print(f"  {name:24s} torch {t:7.2f} ms  jax {j:7.2f} ms  torch / jax = {t / j:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--no-pieces", action="store_true", help="PGD timings only")
    parser.add_argument(
        "--no-sharded", action="store_true", help="skip the one-device-per-core advjax run"
    )
    parser.add_argument("--child", action="store_true", help="measure in this process only")
    args = parser.parse_args()
    if args.child:
        # XLA's CPU thread flags no longer bound its threads (jax 0.10 used both
        # cores under them), so pin the process: both frameworks get these cores.
        available = sorted(os.sched_getaffinity(0))
        if args.threads > len(available):
            raise SystemExit(f"--threads {args.threads}: only {len(available)} cores available.")
        os.sched_setaffinity(0, available[: args.threads])
        if args.threads > 1 and not args.no_sharded:
            import jax  # noqa: F401  (before any JAX operation)

            from advjax import parallel

            parallel.use_cpu_devices(args.threads)
        measure(args)
        return
    for name in args.configs:
        flags = CONFIGS[name]
        if args.threads == 1:
            flags = f"{flags} {SINGLE_THREAD_XLA}".strip()
        print(f"--- XLA config {name}", flush=True)
        env = {**os.environ, "XLA_FLAGS": flags}
        command = [sys.executable, __file__, "--child", "--batch", str(args.batch)]
        command += ["--steps", str(args.steps), "--repeats", str(args.repeats)]
        command += ["--threads", str(args.threads)]
        command += ["--no-pieces"] * args.no_pieces + ["--no-sharded"] * args.no_sharded
        subprocess.run(command, env=env, check=False)


if __name__ == "__main__":
    main()
