# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Robust training of your own model
#
# This notebook adversarially trains a model you write yourself, in
# [Flax NNX](https://flax.readthedocs.io/) (Flax's recommended API) and the same network in
# Flax linen, with advjax's training objectives and `fit`:
#
# 1. an NNX CNN with BatchNorm and dropout, wrapped in `advjax.models.NNXModel`;
# 2. PGD adversarial training (Madry et al. 2018, arXiv:1706.06083) in a few cells;
# 3. clean and adversarial accuracy on held-out images, plotted per epoch;
# 4. checkpointing, an interruption, and a resume that ends bit-identical to an
#    uninterrupted run;
# 5. the trained model saved as a run and loaded back;
# 6. the same network in linen, trained with TRADES (Zhang et al. 2019, arXiv:1901.08573)
#    through the same code path.
#
# Everything runs on the MNIST subset embedded in the package (no download), at a small
# scale so the notebook finishes in about a minute on a laptop CPU: the accuracies printed
# below are those of a few epochs on 1,000 images, not of a converged model.

# %%
import tempfile
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

import advjax
from advjax import models, runs, train

full_train = advjax.data.load_embedded_mnist("train")  # stored sorted by class: draw at random
train_set = full_train.subset(np.random.default_rng(0).permutation(len(full_train))[:1000])
test_set = advjax.data.load_embedded_mnist("test")
x_test = advjax.data.to_device(test_set.images[:200])
y_test = jnp.asarray(test_set.labels[:200])
print(train_set, test_set, sep="\n")

# %% [markdown]
# ## An NNX model with BatchNorm and dropout
#
# Write the model as you always would. `NNXModel` gives it the `init` / `apply` contract
# of a linen module, which is what `TrainState`, every objective, `fit`, `eval_logits_fn`
# and the run format use: one code path for linen, NNX and Equinox models. Attacks always
# see the eval-mode model (BatchNorm on its running averages, dropout off); the training
# pass runs in train mode, with dropout masks drawn from the step's key.


# %%
class CNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 16, (4, 4), strides=2, padding="SAME", rngs=rngs)
        self.norm = nnx.BatchNorm(16, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(16, 32, (4, 4), strides=2, padding="SAME", rngs=rngs)
        self.drop = nnx.Dropout(0.25, rngs=rngs)
        self.dense = nnx.Linear(7 * 7 * 32, 10, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.norm(self.conv1(x)))
        h = self.drop(nnx.relu(self.conv2(h)))
        return self.dense(h.reshape(h.shape[0], -1))


model = models.NNXModel(CNN(nnx.Rngs(0)))
variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
print(model, "parameters:", models.param_count(variables), "collections:", sorted(variables))

# %% [markdown]
# ## PGD adversarial training
#
# The objective attacks each batch with PGD (Linf, eps 0.1, 5 steps) on the eval-mode
# model and trains on the adversarial batch. `robust_eval_fn` measures clean and PGD
# accuracy on 200 held-out test images after every epoch.

# %%
EPS = 0.1
objective = train.pgd_at(lambda e: advjax.pgd(e, steps=5, step_size=e / 2, keep_best=False), EPS)
eval_fn = train.robust_eval_fn(x_test, y_test, advjax.pgd(EPS, steps=10, step_size=EPS / 4))


def new_state(model, variables):
    return train.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats"),
        tx=optax.adam(2e-3),
    )


workdir = Path(tempfile.mkdtemp())


def train_nnx(checkpoint_dir, max_steps=None):
    return train.fit(
        new_state(model, variables),
        train_set,
        train.make_step(objective),
        epochs=3,
        batch_size=100,
        key=jax.random.key(1),
        eval_fn=eval_fn,
        checkpoint_dir=checkpoint_dir,
        progress=False,
        max_steps=max_steps,
    )


result = train_nnx(workdir / "straight")
for record in result.history:
    print(
        f"epoch {record['epoch']}: train loss {record['train/loss']:.3f}, "
        f"clean acc {record['eval/clean_acc']:.3f}, PGD acc {record['eval/adv_acc']:.3f}"
    )

# %%
epochs = [r["epoch"] for r in result.history]
plt.figure(figsize=(5, 3))
plt.plot(epochs, [r["eval/clean_acc"] for r in result.history], "o-", label="clean")
plt.plot(epochs, [r["eval/adv_acc"] for r in result.history], "s-", label=f"PGD-10, eps {EPS}")
plt.xlabel("epoch")
plt.ylabel("accuracy on 200 test images")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Checkpoint, interrupt, resume
#
# `fit` checkpoints after every epoch (orbax, with a SHA-256 per array). Below, a run is
# stopped after 12 steps, as an interrupted job would be, then started again with the
# same arguments: it resumes from the newest checkpoint. Batch order and every random
# draw derive from the step counter, so the resumed run ends with exactly the parameters
# of the uninterrupted run above.

# %%
interrupted = train_nnx(workdir / "resumable", max_steps=12)
print("stopped at step", int(interrupted.state.step))
resumed = train_nnx(workdir / "resumable")
print("resumed run ended at step", int(resumed.state.step))
differences = jax.tree.map(
    lambda a, b: float(jnp.abs(a - b).max()), resumed.state.params, result.state.params
)
print("largest parameter difference from the uninterrupted run:", max(jax.tree.leaves(differences)))

# %% [markdown]
# ## Save as a run, load it back
#
# A run directory is what every `advjax` command reads (`advjax eval`, `certify`,
# `compare`). A model defined in a notebook is not importable by name, so the run records
# its class and `load_run` takes the same architecture back (`model=`).

# %%
run_dir = runs.save_run_model(
    workdir / "run", result.state.variables(), model=model, input_shape=(28, 28, 1)
)
loaded = runs.load_run(run_dir, model=models.NNXModel(CNN(nnx.Rngs(0))))
x_adv = advjax.pgd(EPS, steps=20)(loaded.logits_fn, x_test, y_test, key=jax.random.key(2))
clean = float(train.accuracy(loaded.logits_fn(x_test), y_test))
robust = float(train.accuracy(loaded.logits_fn(x_adv), y_test))
print(f"loaded model: clean accuracy {clean:.3f}, PGD-20 accuracy {robust:.3f}")
trained_nnx = loaded.model.module(loaded.variables)  # back to a plain NNX module
print(type(trained_nnx).__name__, trained_nnx(x_test[:2]).shape)

# %% [markdown]
# ## The same network in linen, trained with TRADES
#
# A linen module needs no wrapper. TRADES trades clean accuracy for robustness through
# `beta` (the paper's weight of the KL term; 6 in the paper).


# %%
class LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.Conv(16, (4, 4), strides=2, padding="SAME")(x)
        h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(h))
        h = nn.relu(nn.Conv(32, (4, 4), strides=2, padding="SAME")(h))
        h = nn.Dropout(0.25, deterministic=not train)(h)
        return nn.Dense(10)(h.reshape(h.shape[0], -1))


linen_model = LinenCNN()
linen_variables = models.init_model(linen_model, jax.random.key(0), (28, 28, 1))
trades = train.trades(EPS, beta=6.0, steps=5, step_size=EPS / 2)
linen_result = train.fit(
    new_state(linen_model, linen_variables),
    train_set,
    train.make_step(trades),
    epochs=3,
    batch_size=100,
    key=jax.random.key(1),
    eval_fn=eval_fn,
    progress=False,
)
for name, history in [("NNX, PGD-AT", result.history), ("linen, TRADES", linen_result.history)]:
    last = history[-1]
    print(f"{name}: clean {last['eval/clean_acc']:.3f}, PGD-10 {last['eval/adv_acc']:.3f}")
