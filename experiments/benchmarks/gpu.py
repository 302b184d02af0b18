"""Accelerator benchmark: PGD-10 on PreAct ResNet-18 (fp32, bf16, vs PyTorch) and AutoAttack.

Written to be run, unattended and once, on a GPU machine (issue 15, point 10).
It measures, in at most ``--budget`` seconds (default 360) of wall time:

1. ``jax.jit(advjax.pgd(8/255, steps=10, step_size=2/255, keep_best=False))``
   on ``advjax.models.PreActResNet18`` (random init, CIFAR-10 shapes
   32x32x3, 10 classes, batch 512, labels = the model's own predictions), in
   fp32 (``advjax.models.eval_logits_fn``) and bf16
   (``advjax.parallel.bf16_logits``): compile seconds, the median of timed
   repeats after a warm-up call, images/s, and model FLOP utilisation (MFU):
   the FLOPs of one attack call, from XLA's cost analysis, divided by
   (seconds x the device's dense peak FLOP/s from :data:`PEAK_FLOPS`).
   XLA's cost analysis counts a ``while`` loop's body once, whatever its trip
   count, so the attack's FLOPs are ``steps`` x the FLOPs of one jitted input
   gradient of the same model at the same batch (the random start, sign step,
   projection and clip are elementwise and negligible); the raw figure for the
   compiled attack call is recorded too. Unknown device -> MFU ``null`` and the
   reason, never a guessed peak.
2. The same attack in PyTorch, when ``torch`` is importable and has CUDA: a
   PreAct ResNet-18 of the same architecture (same layers, same parameter
   count, same FLOPs; its own random weights, so the logits differ), eval mode,
   channels-last, the PGD-10 loop written by hand (random start, sign step,
   projection, clip), eager, fp32 and bf16 (``torch.autocast``); images/s and
   the ratio advjax / torch. Recorded as skipped, with the reason, otherwise.
3. AutoAttack throughput: ``advjax.evaluation.autoattack`` on a few hundred
   images (labels = predictions) with the standard ensemble (APGD-CE, APGD-T,
   FAB-T, Square at the paper's settings, built once with
   ``advjax.evaluation.standard_attacks(8/255)`` and passed as
   ``version="custom"``, which for 10 classes is exactly what
   ``version="standard"`` runs, so that a second, warm call reuses the
   compiled attacks); images/s cold (with compilation) and warm, and the
   per-stage seconds from the result's ``per_attack``. If the time left is too
   short for it, a reduced ensemble (fewer steps, targets and queries) runs
   instead, and the JSON says exactly which.

The results go to ONE JSON file (``--out``, default ``gpu_benchmark.json``),
rewritten after every measurement (so a run stopped early keeps what it had);
a short table is printed at the end. A watchdog writes the file and exits with
status 3 if the budget runs out. Device kind, backend, package versions and
the time spent (``budget_seconds`` / ``elapsed_seconds``) are in the file.

On a GPU machine (JAX with CUDA, flax, optax and optionally torch installed;
no network and no data needed)::

    pip install --no-deps -e . && python experiments/benchmarks/gpu.py --out gpu.json

On CPU (``jax.default_backend() == "cpu"``) a tiny configuration runs unless
``--full`` is given (batch 4, ``stage_sizes=(1, 1, 1, 1)``, 2 PGD steps, a
tiny AutoAttack on 4 images): it exercises every code path in well under a
minute; ``--tiny`` forces it anywhere. ``tests/benchmarks/test_gpu_benchmark.py``
runs it.

    python experiments/benchmarks/gpu.py [--tiny | --full] [--out PATH] [--budget 360]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import re
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

EPS = 8 / 255
STEP_SIZE = 2 / 255
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
BUDGET_SECONDS = 360.0
# The torch half shares the GPU: leave it half of the memory (JAX takes 75% by default).
MEM_FRACTION = "0.5"

# Dense (no sparsity) peak FLOP/s from NVIDIA's data sheets, per compute type:
# bf16 and tf32 on tensor cores, fp32 on the CUDA cores. Matched against
# jax.devices()[0].device_kind by _peak_entry; anything else has no entry.
PEAK_FLOPS = {
    "H100 SXM / H200 SXM": {"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12},
    "H100 PCIe": {"bf16": 756.0e12, "tf32": 378.0e12, "fp32": 51.2e12},
    "A100": {"bf16": 312.0e12, "tf32": 156.0e12, "fp32": 19.5e12},
    "L40S": {"bf16": 362.05e12, "tf32": 183.0e12, "fp32": 91.6e12},
    "L4": {"bf16": 121.0e12, "tf32": 60.0e12, "fp32": 30.3e12},
}


@dataclasses.dataclass(frozen=True)
class Config:
    """One benchmark configuration (full or tiny)."""

    tiny: bool
    batch: int
    stage_sizes: tuple[int, ...]
    steps: int
    repeats: int
    aa_examples: int
    aa_steps: int
    aa_targets: int
    aa_queries: int
    aa_reduced: tuple[int, int, int]  # steps, targets, queries if time is short


FULL = Config(
    tiny=False,
    batch=512,
    stage_sizes=(2, 2, 2, 2),
    steps=10,
    repeats=10,
    aa_examples=500,
    aa_steps=100,
    aa_targets=9,
    aa_queries=5000,
    aa_reduced=(20, 3, 500),
)
TINY = Config(
    tiny=True,
    batch=4,
    stage_sizes=(1, 1, 1, 1),
    steps=2,
    repeats=2,
    aa_examples=4,
    aa_steps=2,
    aa_targets=2,
    aa_queries=4,
    aa_reduced=(2, 2, 4),
)


class Recorder:
    """The JSON record, rewritten atomically after each measurement."""

    def __init__(self, path: Path, budget: float):
        self.path = path
        self.budget = budget
        self.started = time.perf_counter()
        self.lock = threading.Lock()
        self.data: dict[str, Any] = {"budget_seconds": budget, "measurements": {}}

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return self.budget - self.elapsed()

    def write(self) -> None:
        with self.lock:
            self.data["elapsed_seconds"] = round(self.elapsed(), 3)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.data, indent=2, default=_jsonable) + "\n")
            os.replace(tmp, self.path)

    def record(self, name: str, entry: dict[str, Any]) -> None:
        entry["finished_at_seconds"] = round(self.elapsed(), 3)
        self.data["measurements"][name] = entry
        self.write()

    def start_watchdog(self) -> threading.Timer:
        def expire():
            self.data["stopped"] = (
                f"budget of {self.budget:.0f} s exhausted; the measurements not in this "
                "file did not finish"
            )
            self.write()
            print(f"budget exhausted: partial results in {self.path}", file=sys.stderr)
            os._exit(3)

        timer = threading.Timer(max(self.left(), 0.0), expire)
        timer.daemon = True
        timer.start()
        return timer


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _versions() -> dict[str, str | None]:
    out = {}
    for name in ("jax", "jaxlib", "flax", "optax", "jax-cuda12-plugin", "jax-cuda13-plugin"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _flops(cost) -> float | None:
    """The ``flops`` of a cost analysis: a dict, a list of dicts (older jax) or None."""
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost:
        return None
    flops = cost.get("flops")
    return float(flops) if flops is not None and flops > 0 else None


def _peak_entry(device_kind: str) -> tuple[str | None, dict[str, float] | None]:
    kind = device_kind.upper()
    if "NVL" in kind:  # H100 NVL / H200 NVL: different clocks and power, not in the table
        return None, None
    if "H200" in kind or ("H100" in kind and "PCIE" not in kind):
        name = "H100 SXM / H200 SXM"
    elif "H100" in kind:
        name = "H100 PCIe"
    elif "A100" in kind:
        name = "A100"
    elif "L40S" in kind:
        name = "L40S"
    elif re.search(r"\bL4\b", kind):
        name = "L4"
    else:
        return None, None
    return name, PEAK_FLOPS[name]


def peak_flops(device_kind: str, precision: str, backend: str) -> dict[str, Any]:
    """The peak FLOP/s an attack in ``precision`` can reach here, and why; None if unknown."""
    import jax

    name, entry = _peak_entry(device_kind)
    if entry is None or backend != "gpu":
        return {
            "peak_flops_per_second": None,
            "reason": f"no peak FLOP/s known for device kind {device_kind!r} "
            f"(backend {backend!r}); MFU is not reported",
        }
    if precision == "bf16":
        return {
            "peak_flops_per_second": entry["bf16"],
            "peak_basis": f"{name} dense bf16 tensor-core peak (bf16_logits runs the "
            "convolutions in bf16)",
        }
    matmul = jax.config.jax_default_matmul_precision
    if matmul in (None, "default", "fastest", "tensorfloat32", "TF32_TF32_F32"):
        return {
            "peak_flops_per_second": entry["tf32"],
            "peak_basis": f"{name} dense TF32 tensor-core peak: jax_default_matmul_precision "
            f"is {matmul!r}, and at XLA's DEFAULT precision fp32 convolutions and dots run as "
            "TF32 on Ampere and later GPUs (the fp32 CUDA-core peak, "
            f"{entry['fp32']:.3g}, is not the limit)",
        }
    if matmul in ("highest", "float32", "F32_F32_F32"):
        return {
            "peak_flops_per_second": entry["fp32"],
            "peak_basis": f"{name} fp32 CUDA-core peak: jax_default_matmul_precision is "
            f"{matmul!r} (true fp32 convolutions)",
        }
    return {
        "peak_flops_per_second": None,
        "reason": f"jax_default_matmul_precision={matmul!r}: which peak applies is unclear",
    }


def _median_seconds(fn, repeats: int) -> list[float]:
    import jax

    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - started)
    return times


def measure_jax_pgd(precision, logits_fn, x, y, key, cfg, predict, env) -> dict[str, Any]:
    """PGD-``steps`` jitted with the model closed over: compile, time, FLOPs, MFU."""
    import jax

    import advjax
    from advjax import losses

    attack = advjax.pgd(EPS, steps=cfg.steps, step_size=STEP_SIZE, keep_best=False)
    run = jax.jit(lambda xb, yb, k: attack(logits_fn, xb, yb, key=k))
    started = time.perf_counter()
    compiled = run.lower(x, y, key).compile()
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    x_adv = jax.block_until_ready(compiled(x, y, key))
    first_s = time.perf_counter() - started
    times = _median_seconds(lambda: compiled(x, y, key), cfg.repeats)
    median = statistics.median(times)

    raw = _flops(compiled.cost_analysis())
    grad = jax.jit(lambda xb, yb: jax.grad(lambda v: losses.ce(logits_fn(v), yb).sum())(xb))
    lowered = grad.lower(x, y)
    per_grad = _flops(lowered.cost_analysis())
    grad_source = "XLA cost analysis of the lowered (unoptimised) jitted input gradient"
    if per_grad is None:
        per_grad = _flops(lowered.compile().cost_analysis())
        grad_source = "XLA cost analysis of the compiled jitted input gradient"
    flops: dict[str, Any] = {"xla_attack_call_raw": raw, "per_input_gradient": per_grad}
    flops["convention"] = (
        "XLA counts a padded convolution's multiply-adds with real inputs only (for "
        "PreActResNet18 at 32x32, 13% fewer than the usual count), so the MFU is conservative"
    )
    if raw is not None and per_grad is not None and raw >= 0.9 * cfg.steps * per_grad:
        flops["per_attack"] = raw
        flops["source"] = "XLA cost analysis of the compiled attack (counts every iteration)"
    elif per_grad is not None:
        flops["per_attack"] = cfg.steps * per_grad
        flops["source"] = (
            f"steps x per_input_gradient ({grad_source}); the compiled attack's own figure "
            "(xla_attack_call_raw) counts the step loop's body once"
        )
    else:
        flops["per_attack"] = None
        flops["reason"] = f"XLA cost analysis gave no FLOPs on backend {env['backend']!r}"

    entry: dict[str, Any] = {
        "status": "ok",
        "framework": "advjax",
        "precision": precision,
        "logits_fn": {
            "fp32": "advjax.models.eval_logits_fn(model, variables)",
            "bf16": "advjax.parallel.bf16_logits(model, variables)",
        }[precision],
        "attack": f"jax.jit(advjax.pgd({EPS!r}, steps={cfg.steps}, step_size={STEP_SIZE!r}, "
        "keep_best=False)) with the logits function closed over",
        "batch": cfg.batch,
        "steps": cfg.steps,
        "eps": EPS,
        "step_size": STEP_SIZE,
        "compile_seconds": compile_s,
        "first_call_seconds": first_s,
        "repeats": cfg.repeats,
        "seconds": times,
        "median_seconds": median,
        "images_per_second": cfg.batch / median,
        "attack_success_rate": float((predict(x_adv) != y).mean()),
        "flops": flops,
    }
    entry.update(_mfu(flops["per_attack"], median, env, precision))
    return entry


def _mfu(flops_per_call, seconds, env, precision) -> dict[str, Any]:
    peak = peak_flops(env["device_kind"], precision, env["backend"])
    out = {"mfu": None, **peak}
    if flops_per_call is None:
        out["mfu_reason"] = "no FLOP count"
    elif peak["peak_flops_per_second"] is None:
        out["mfu_reason"] = peak["reason"]
    else:
        out["achieved_flops_per_second"] = flops_per_call / seconds
        out["mfu"] = _finite(flops_per_call / (seconds * peak["peak_flops_per_second"]))
    return out


def _torch_preact_resnet18(torch, stage_sizes, num_classes):
    """PreAct ResNet-18 in PyTorch, layer for layer the architecture of advjax's."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(cin, eps=1e-5, momentum=0.1)
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.shortcut = None
            if stride != 1 or cin != cout:
                self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

        def forward(self, x):
            out = torch.relu(self.bn1(x))
            shortcut = x if self.shortcut is None else self.shortcut(out)
            y = self.conv1(out)
            y = self.conv2(torch.relu(self.bn2(y)))
            return y + shortcut

    class PreActResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            layers, cin = [], 64
            for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), stage_sizes, strict=True)):
                for j in range(blocks):
                    layers.append(Block(cin, width, 2 if (i > 0 and j == 0) else 1))
                    cin = width
            self.layers = nn.Sequential(*layers)
            self.bn = nn.BatchNorm2d(cin, eps=1e-5, momentum=0.1)
            self.linear = nn.Linear(cin, num_classes)

        def forward(self, x):
            x = self.layers(self.conv1(x))
            x = torch.relu(self.bn(x))
            return self.linear(x.mean(dim=(2, 3)))

    return PreActResNet18()


def _torch_pgd(torch, model, x, y, *, steps, bf16, device_type):
    """Hand-written PGD-Linf: random start, sign steps, projection onto the ball, clip."""
    x_adv = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x_adv)
        loss = torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv + STEP_SIZE * grad.sign()
            x_adv = torch.minimum(torch.maximum(x_adv, x - EPS), x + EPS).clamp(0, 1)
    return x_adv.detach()


def measure_torch(cfg, env, jax_entries, jax_params, jax_forward_flops) -> dict[str, Any]:
    """The same PGD in PyTorch (CUDA; or CPU torch in the tiny configuration)."""
    try:
        import torch
    except ImportError as error:
        return {"status": "skipped", "reason": f"torch is not importable: {error}"}
    env["versions"]["torch"] = torch.__version__
    if torch.cuda.is_available():
        device_type = "cuda"
    elif cfg.tiny:
        device_type = "cpu"
    else:
        return {
            "status": "skipped",
            "reason": f"torch {torch.__version__} sees no CUDA device",
            "torch_version": torch.__version__,
        }
    device = torch.device(device_type)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    model = _torch_preact_resnet18(torch, cfg.stage_sizes, NUM_CLASSES).eval()
    model = model.to(device, memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    params = sum(p.numel() for p in model.parameters())
    x = torch.rand((cfg.batch, 3, *IMAGE_SHAPE[:2]), device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = model(x).argmax(-1)
    torch_forward = None
    try:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x[:1])
        torch_forward = float(counter.get_total_flops())
    except Exception as error:  # noqa: BLE001 - an optional cross-check
        torch_forward = f"unavailable: {error!r}"

    def sync():
        if device_type == "cuda":
            torch.cuda.synchronize()

    entry: dict[str, Any] = {
        "status": "ok",
        "framework": "torch",
        "torch_version": torch.__version__,
        "device": str(torch.cuda.get_device_name(0) if device_type == "cuda" else "cpu"),
        "mode": "eager, eval mode, channels_last, cudnn.benchmark=True",
        "loop": "hand-written PGD-Linf: uniform random start, sign step, projection, clip",
        "weights": "torch's own random init (not advjax's): same architecture and FLOPs, "
        "different logits",
        "architecture_check": {
            "torch_parameters": params,
            "advjax_parameters": jax_params,
            "equal": params == jax_params,
            "torch_forward_flops_per_image_conv_and_linear": torch_forward,
            "advjax_forward_flops_per_image_xla": jax_forward_flops,
            "note": "XLA's cost analysis counts only the multiply-adds of a padded "
            "convolution that touch real inputs, torch's counter (the usual convention) "
            "every one: for PreActResNet18 at 32x32 XLA's forward figure is 0.97 GFLOPs per "
            "image against the usual 1.11 (13% lower), so MFU from XLA's count is conservative",
        },
        "tf32": {
            "cudnn.allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "cuda.matmul.allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        },
        "batch": cfg.batch,
        "steps": cfg.steps,
        "per_precision": {},
    }
    for precision in ("fp32", "bf16"):
        bf16 = precision == "bf16"

        def run(bf16=bf16):
            out = _torch_pgd(
                torch, model, x, y, steps=cfg.steps, bf16=bf16, device_type=device_type
            )
            sync()
            return out

        started = time.perf_counter()
        x_adv = run()
        first_s = time.perf_counter() - started
        times = []
        for _ in range(cfg.repeats):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        with torch.no_grad():
            success = float((model(x_adv).argmax(-1) != y).float().mean())
        jax_entry = jax_entries.get(precision, {})
        item = {
            "precision": precision,
            "autocast": "torch.autocast(dtype=torch.bfloat16)" if bf16 else None,
            "first_call_seconds": first_s,
            "seconds": times,
            "median_seconds": median,
            "images_per_second": cfg.batch / median,
            "attack_success_rate": success,
        }
        flops = jax_entry.get("flops", {}).get("per_attack")
        item.update(_mfu(flops, median, env, precision))
        if jax_entry.get("images_per_second"):
            item["advjax_over_torch"] = jax_entry["images_per_second"] / item["images_per_second"]
        entry["per_precision"][precision] = item
    return entry


def measure_autoattack(logits_fn, x, y, cfg, recorder) -> dict[str, Any]:
    """AutoAttack's standard ensemble (or a reduced one if time is short), cold then warm."""
    import jax

    from advjax import evaluation

    # Cold standard AutoAttack on a random-init ResNet-18 is mostly compilation
    # (APGD-CE breaks nearly every point; the later attacks get few): about a
    # minute on an H100-class GPU. Below this much time left, run the reduced one.
    needed = 150.0 if not cfg.tiny else 0.0
    left = recorder.left() - 10.0
    if left < 20.0:
        return {"status": "skipped", "reason": f"only {left:.0f} s of the budget left"}
    if left >= needed:
        steps, targets, queries = cfg.aa_steps, cfg.aa_targets, cfg.aa_queries
        ensemble = "tiny" if cfg.tiny else "standard"
    else:
        steps, targets, queries = cfg.aa_reduced
        ensemble = "reduced"
    attacks = evaluation.standard_attacks(EPS, steps=steps, targets=targets, queries=queries)
    n = min(cfg.aa_examples, len(x))
    xs, ys = x[:n], y[:n]
    call = dict(eps=EPS, key=jax.random.key(7), version="custom", attacks=attacks)
    call.update(batch_size=n, diagnostics=False)
    started = time.perf_counter()
    result = evaluation.autoattack(logits_fn, xs, ys, **call)
    cold = time.perf_counter() - started
    entry: dict[str, Any] = {
        "status": "ok",
        "ensemble": ensemble,
        "what_ran": (
            "advjax.evaluation.autoattack(eval_logits_fn(model, variables) [fp32], x, y, "
            f"eps={EPS!r}, key=jax.random.key(7), version='custom', "
            f"attacks=advjax.evaluation.standard_attacks({EPS!r}, steps={steps}, "
            f"targets={targets}, queries={queries}), batch_size={n}, diagnostics=False)"
        ),
        "note": (
            "standard_attacks with steps=100, targets=9, queries=5000 is the ensemble "
            "version='standard' runs for 10 classes; it is built once and passed as "
            "version='custom' so that the warm call reuses the compiled attacks. "
            "diagnostics=False: the gradient-masking checks are not part of the ensemble."
            if ensemble == "standard"
            else f"reduced from the standard steps=100, targets=9, queries=5000 "
            f"({'tiny configuration' if cfg.tiny else 'too little budget left'})"
        ),
        "attacks": {"steps": steps, "targets": targets, "queries": queries},
        "num_examples": n,
        "clean_accuracy": result.clean_accuracy,
        "robust_accuracy": result.robust_accuracy,
        "attacks_run": result.attacks_run,
        "cold": {
            "seconds": cold,
            "images_per_second": n / cold,
            "includes": "compilation of every attack for its batch shapes",
            "per_attack": _stages(result),
        },
    }
    recorder.record("autoattack", entry)
    if recorder.left() > 2.0 * cold + 10.0:
        started = time.perf_counter()
        warm = evaluation.autoattack(logits_fn, xs, ys, **call)
        seconds = time.perf_counter() - started
        entry["warm"] = {
            "seconds": seconds,
            "images_per_second": n / seconds,
            "robust_accuracy": warm.robust_accuracy,
            "per_attack": _stages(warm),
        }
    else:
        entry["warm"] = {"status": "skipped", "reason": "not enough budget left"}
    return entry


def _stages(result) -> dict[str, dict[str, float]]:
    return {
        name: {
            "seconds": stage["seconds"],
            "broken": stage["broken"],
            "robust_accuracy_after": stage["robust_accuracy_after"],
        }
        for name, stage in result.per_attack.items()
    }


def random_variables(model, seed: int) -> dict[str, Any]:
    """The model's variables drawn with NumPy: PyTorch's default init, without compiling.

    ``models.init_model`` compiles the initialisers, which takes longer than
    the tiny benchmark may on CPU; the throughput does not depend on the
    weights. Conv and dense kernels are uniform in ``+-1/sqrt(fan_in)`` (what
    PyTorch's default and advjax's ``_TORCH_DEFAULT_INIT`` draw), BatchNorm
    scales and running variances 1, biases and running means 0.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(seed), jnp.zeros((1, *IMAGE_SHAPE)), train=False)
    )

    def draw(path, spec):
        name = getattr(path[-1], "key", str(path[-1]))
        if name in ("scale", "var"):
            return jnp.ones(spec.shape, spec.dtype)
        if name == "kernel":
            bound = 1.0 / math.sqrt(math.prod(spec.shape[:-1]))
            return jnp.asarray(rng.uniform(-bound, bound, spec.shape), spec.dtype)
        return jnp.zeros(spec.shape, spec.dtype)

    return dict(jax.tree_util.tree_map_with_path(draw, shapes))


def _guarded(recorder: Recorder, name: str, fn, *args) -> dict[str, Any]:
    try:
        entry = fn(*args)
    except Exception as error:  # noqa: BLE001 - one failure must not lose the others
        entry = {
            "status": "error",
            "reason": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(limit=8),
        }
        print(f"{name} failed: {entry['reason']}", file=sys.stderr)
    recorder.record(name, entry)
    return entry


def _fmt(value, width: int, digits: int = 1, suffix: str = "") -> str:
    text = "-" if value is None else f"{value:.{digits}f}{suffix}"
    return f"{text:>{width}}"


def print_table(data: dict[str, Any]) -> None:
    m = data["measurements"]
    rows = []
    for precision in ("fp32", "bf16"):
        e = m.get(f"advjax_pgd_{precision}", {})
        if e.get("status") == "ok":
            rows.append(
                (
                    f"advjax PGD-{e['steps']} {precision}",
                    e["images_per_second"],
                    e["compile_seconds"],
                    e["mfu"],
                    None,
                )
            )
    t = m.get("torch_pgd", {})
    for precision, e in t.get("per_precision", {}).items():
        rows.append(
            (
                f"torch  PGD-{t['steps']} {precision}",
                e["images_per_second"],
                None,
                e["mfu"],
                e.get("advjax_over_torch"),
            )
        )
    aa = m.get("autoattack", {})
    if aa.get("status") == "ok":
        rows.append(
            (f"AutoAttack {aa['ensemble']} cold", aa["cold"]["images_per_second"], None, None, None)
        )
        if "images_per_second" in aa.get("warm", {}):
            rows.append(
                (
                    f"AutoAttack {aa['ensemble']} warm",
                    aa["warm"]["images_per_second"],
                    None,
                    None,
                    None,
                )
            )
    env = data["environment"]
    print(f"\n{env['device_kind']} ({env['backend']}), jax {env['versions']['jax']}")
    print(f"{'measurement':<28}{'images/s':>12}{'compile s':>11}{'MFU':>8}{'jax/torch':>11}")
    for name, ips, comp, mfu, ratio in rows:
        mfu = None if mfu is None else 100 * mfu
        print(
            f"{name:<28}{_fmt(ips, 12)}{_fmt(comp, 11)}{_fmt(mfu, 8, 1, '%')}{_fmt(ratio, 11, 2)}"
        )
    for name, e in m.items():
        if e.get("status") != "ok":
            print(f"{name}: {e.get('status')} ({e.get('reason')})")
    if aa.get("status") == "ok":
        stages = ", ".join(f"{k} {v['seconds']:.1f}s" for k, v in aa["cold"]["per_attack"].items())
        print(f"AutoAttack robust accuracy {aa['robust_accuracy']:.3f}; cold stages: {stages}")
    print(f"elapsed {data['elapsed_seconds']:.1f} s of {data['budget_seconds']:.0f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_true", help="the tiny configuration")
    size.add_argument("--full", action="store_true", help="the full configuration, even on CPU")
    parser.add_argument("--out", default="gpu_benchmark.json", type=Path)
    parser.add_argument("--budget", default=BUDGET_SECONDS, type=float, help="seconds")
    args = parser.parse_args(argv)
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", MEM_FRACTION)
    recorder = Recorder(args.out, args.budget)
    timer = recorder.start_watchdog()

    import jax
    import jax.numpy as jnp

    from advjax import models, parallel

    backend = jax.default_backend()
    cfg = TINY if args.tiny or (backend == "cpu" and not args.full) else FULL
    device = jax.devices()[0]
    env = {
        "device_kind": device.device_kind,
        "backend": backend,
        "platform_version": getattr(device.client, "platform_version", None),
        "device_count": jax.device_count(),
        "versions": {**_versions(), "python": platform.python_version()},
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "XLA_PYTHON_CLIENT_MEM_FRACTION": os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
    }
    recorder.data["environment"] = env
    recorder.data["config"] = {
        **dataclasses.asdict(cfg),
        "model": f"advjax.models.PreActResNet18(stage_sizes={cfg.stage_sizes}), random weights "
        "(NumPy, PyTorch's default init; see random_variables)",
        "input": f"uniform random images {IMAGE_SHAPE}, labels = the model's predictions",
        "eps": EPS,
        "step_size": STEP_SIZE,
        "timing": "median of `repeats` calls after a warm-up call, jax.block_until_ready",
    }
    recorder.data["peak_flops_table"] = PEAK_FLOPS
    recorder.write()

    model = models.PreActResNet18(num_classes=NUM_CLASSES, stage_sizes=cfg.stage_sizes)
    variables = random_variables(model, seed=0)
    fp32 = models.eval_logits_fn(model, variables)
    bf16 = parallel.bf16_logits(model, variables)
    forward = jax.jit(fp32)
    x = jax.random.uniform(jax.random.key(1), (cfg.batch, *IMAGE_SHAPE))
    y = jnp.argmax(forward(x), -1)

    def predict(images):
        return jnp.argmax(forward(images), -1)

    key = jax.random.key(2)
    one = jax.ShapeDtypeStruct((1, *IMAGE_SHAPE), jnp.float32)
    forward_flops = _flops(jax.jit(fp32).lower(one).cost_analysis())
    recorder.data["setup_seconds"] = round(recorder.elapsed(), 3)
    recorder.data["model"] = {
        "parameters": models.param_count(variables),
        "forward_flops_per_image_xla": forward_flops,
    }

    jax_entries = {}
    for precision, logits_fn in (("fp32", fp32), ("bf16", bf16)):
        jax_entries[precision] = _guarded(
            recorder,
            f"advjax_pgd_{precision}",
            measure_jax_pgd,
            precision,
            logits_fn,
            x,
            y,
            key,
            cfg,
            predict,
            env,
        )
    _guarded(
        recorder,
        "torch_pgd",
        measure_torch,
        cfg,
        env,
        jax_entries,
        models.param_count(variables),
        forward_flops,
    )
    _guarded(recorder, "autoattack", measure_autoattack, fp32, x, y, cfg, recorder)
    timer.cancel()
    recorder.write()
    print_table(recorder.data)
    print(f"wrote {args.out}")
    failed = [k for k, v in recorder.data["measurements"].items() if v["status"] == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
