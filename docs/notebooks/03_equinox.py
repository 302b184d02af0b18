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
# # An Equinox model: attacked, adversarially trained, certified
#
# [Equinox](https://docs.kidger.site/equinox/) models are pytrees that act on one example.
# advjax's attacks and bounds take any function, so an Equinox model is attacked and
# certified as soon as it is a batched logits function; `advjax.models.EquinoxModel`
# gives it that form (a `vmap` over the batch, inference mode for evaluation) and the
# `init` / `apply` contract that training and the run format use.
#
# The sizes are small so the notebook runs in under a minute on a laptop CPU; the
# accuracies printed are those of a briefly trained model on 200 test images.

# %%
import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import advjax
from advjax import models, train

full_train = advjax.data.load_embedded_mnist("train")  # stored sorted by class: draw at random
train_set = full_train.subset(np.random.default_rng(0).permutation(len(full_train))[:2000])
test_set = advjax.data.load_embedded_mnist("test")
x_test = advjax.data.to_device(test_set.images[:200])
y_test = jnp.asarray(test_set.labels[:200])


# %% [markdown]
# ## The model
#
# A small fully connected ReLU network, written the Equinox way: one example in, logits out,
# and a `key` keyword (unused here; dropout layers would draw from it in train mode).


# %%
class MLP(eqx.Module):
    layers: list

    def __init__(self, key):
        keys = jax.random.split(key, 3)
        self.layers = [
            eqx.nn.Linear(784, 256, key=keys[0]),
            eqx.nn.Linear(256, 128, key=keys[1]),
            eqx.nn.Linear(128, 10, key=keys[2]),
        ]

    def __call__(self, x, *, key=None):
        h = x.reshape(-1)
        for layer in self.layers[:-1]:
            h = jax.nn.relu(layer(h))
        return self.layers[-1](h)


model = models.EquinoxModel(MLP(jax.random.key(0)))
variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
print(model, "parameters:", models.param_count(variables))
print(jax.tree.map(jnp.shape, variables["params"]["layers"]["0"]))


# %% [markdown]
# ## Standard training, then an attack
#
# A few epochs of plain training, then PGD (Linf, eps 0.1, 40 steps). `eval_logits_fn`
# is the batched, eval-mode function every attack and bound takes.

# %%
def train_model(objective, epochs):
    state = train.TrainState.create(
        apply_fn=model.apply, params=variables["params"], tx=optax.adam(1e-3)
    )
    result = train.fit(
        state,
        train_set,
        train.make_step(objective),
        epochs=epochs,
        batch_size=100,
        key=jax.random.key(1),
        progress=False,
    )
    return result.state.variables()


EPS = 0.1
attack = advjax.pgd(EPS, steps=40, step_size=EPS / 10)


def report(name, trained):
    logits_fn = models.eval_logits_fn(model, trained)
    x_adv = jax.jit(attack, static_argnums=0)(logits_fn, x_test, y_test, key=jax.random.key(2))
    clean = float(train.accuracy(logits_fn(x_test), y_test))
    robust = float(train.accuracy(logits_fn(x_adv), y_test))
    print(f"{name}: clean {clean:.3f}, PGD-40 at eps {EPS}: {robust:.3f}")
    return logits_fn, x_adv


standard_vars = train_model(train.standard(), epochs=3)
standard_fn, standard_adv = report("standard training", standard_vars)

# %% [markdown]
# ## Adversarial training
#
# The same model, trained with PGD adversarial training (Madry et al. 2018,
# arXiv:1706.06083) for the same number of epochs: the objective attacks each batch on the
# eval-mode model, and the loss is taken on the adversarial batch.

# %%
pgd_at = train.pgd_at(lambda e: advjax.pgd(e, steps=5, step_size=e / 2, keep_best=False), EPS)
robust_vars = train_model(pgd_at, epochs=3)
robust_fn, robust_adv = report("PGD adversarial training", robust_vars)

# %%
fig, axes = plt.subplots(2, 6, figsize=(9, 3.2))
for i in range(6):
    for row, (fn, adv, name) in enumerate(
        [(standard_fn, standard_adv, "standard"), (robust_fn, robust_adv, "PGD-AT")]
    ):
        axes[row, i].imshow(np.asarray(adv[i, ..., 0]), cmap="gray", vmin=0, vmax=1)
        axes[row, i].set_title(f"{name}: {int(jnp.argmax(fn(adv[i : i + 1])))}", fontsize=8)
        axes[row, i].axis("off")
fig.suptitle(f"PGD adversarial examples at eps {EPS} and the predicted class")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Certification
#
# PGD gives an upper bound on robust accuracy; a certificate gives a lower bound. Interval
# bound propagation (IBP) and CROWN bound the logits of the Equinox model over the whole
# Linf ball (the bounds are traced from the function's jaxpr, so the `vmap` inside
# `EquinoxModel` is no obstacle). An example is certified when the lower bound of its
# true logit minus every other logit is positive. Certified accuracy can never exceed the
# PGD accuracy: if it did, one of the two would be wrong.

# %%
radii = jnp.array([0.0, 0.01, 0.03, EPS])
for name, fn, adv in [("standard", standard_fn, standard_adv), ("PGD-AT", robust_fn, robust_adv)]:
    for method in ("ibp", "crown"):
        certified = advjax.certify.certified_accuracy(fn, x_test, y_test, radii, method=method)
        shares = ", ".join(f"{float(e):g}: {float(c.mean()):.3f}" for e, c in zip(radii, certified))
        broken = jnp.argmax(fn(adv), axis=-1) != y_test
        contradictions = int(jnp.sum(certified[-1] & broken))
        print(f"{name:9s} {method:5s} certified accuracy by eps  {shares}")
        print(f"{'':15s} certified at eps {EPS} yet broken by PGD: {contradictions}")

# %% [markdown]
# Compare the certified accuracy at eps 0.1 with the PGD accuracy at the same budget above:
# the certificate is a lower bound on the robust accuracy and PGD an upper bound, and no
# example may be both certified and broken (the counts of contradictions must be 0).
# CROWN's linear relaxation is tighter than IBP's boxes. Adversarial training alone leaves a
# wide gap between the two bounds at the training budget; certified training
# (`train.ibp_training`, `train.crown_ibp_training`) is what closes it.
