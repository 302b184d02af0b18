# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Attacks are functions
#
# In advjax an attack is a pure function `attack(logits_fn, x, y, *, key) -> x_adv`. The model
# is just another function (`x -> logits`), the randomness comes from an explicit key, and the
# attack's step loop is a compiled `lax.fori_loop`. So the usual JAX transformations apply to
# attacks as they do to any other function:
#
# 1. `jax.jit` compiles a whole attack into one program;
# 2. `jax.vmap` maps it over budgets (a traced epsilon) or over single examples;
# 3. `jax.grad` differentiates through it (the gradient of the robust loss with respect to the
#    model's parameters);
# 4. the loss an attack ascends and the threat model it moves in are plain arguments, so a loss
#    or a perturbation set written in this notebook plugs in like the built-in ones.
#
# Everything runs on the MNIST subset embedded in the package (no download), on a CPU.

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import advjax
from advjax import data, losses, models, train

print("jax", jax.__version__, "on", jax.devices()[0].platform)

# %% [markdown]
# ## A small model, trained briefly
#
# We train the fast-AT MNIST net of Wong et al. (2020) for two epochs of FGSM-RS adversarial
# training (`train.fgsm_rs`) at a Linf budget of 0.1 on the 5,000 embedded training images,
# and evaluate on the first 500 embedded test images. `models.eval_logits_fn` turns the
# trained Flax variables into the eval-mode `logits_fn` that every attack takes.

# %%
train_set = data.load_embedded_mnist("train")
test_set = data.load_embedded_mnist("test")
x_test = data.to_device(test_set.images[:500])
y_test = jnp.asarray(test_set.labels[:500])

model = models.get_model("fast_mnist")
variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
state = train.TrainState.create(
    apply_fn=model.apply, params=variables["params"], tx=optax.adam(1e-3)
)
result = train.fit(
    state,
    train_set,
    train.make_step(train.fgsm_rs(0.1, alpha=0.125)),
    epochs=2,
    batch_size=100,
    key=jax.random.key(1),
    progress=False,
)
params = result.state.params
logits_fn = models.eval_logits_fn(model, result.state.variables())


def accuracy(x, y=y_test):
    """Share of the images in ``x`` that ``logits_fn`` classifies as ``y``."""
    return float(jnp.mean(jnp.argmax(logits_fn(x), axis=-1) == y))


print(f"{int(result.state.step)} training steps in {result.train_seconds:.1f} s")
print(f"clean test accuracy: {accuracy(x_test):.1%}")

# %% [markdown]
# ## 1. jax.jit: one compiled program per attack
#
# `advjax.pgd(eps, steps=...)` returns the attack; the model is a static argument (a Python
# function), the arrays and the key are traced. The first call traces and compiles, later
# calls with the same shapes only run.

# %%
key = jax.random.key(0)
pgd = advjax.pgd(eps=0.1, steps=10)
pgd_jit = jax.jit(pgd, static_argnums=0)

start = time.perf_counter()
x_adv = pgd_jit(logits_fn, x_test, y_test, key=key).block_until_ready()
first_call = time.perf_counter() - start
start = time.perf_counter()
x_adv = pgd_jit(logits_fn, x_test, y_test, key=key).block_until_ready()
second_call = time.perf_counter() - start

print(f"first call (trace, compile, run): {first_call:.2f} s; second call: {second_call:.2f} s")
print(f"PGD-10 at eps 0.1: robust accuracy {accuracy(x_adv):.1%}")
print(f"largest |x_adv - x|: {float(jnp.abs(x_adv - x_test).max()):.4f}")

# %% [markdown]
# The second call is the cost of the attack itself. The largest coordinate change is at most the
# budget: every attack's output lies in its threat model and in `[0, 1]`.
#
# ## 2. jax.vmap over budgets: a traced epsilon
#
# The budget is an ordinary (traceable) number, so a whole robustness sweep is one `vmap` over a
# vector of budgets, compiled once. (`advjax.over_epsilons` packages the same idea; it runs
# the budgets one after another with `lax.map`, which keeps a batch split over devices split.)

# %%
epsilons = jnp.linspace(0.0, 0.3, 7)


def pgd_at_budget(eps, x, y, key):
    return advjax.pgd(eps, steps=10)(logits_fn, x, y, key=key)


# Map over the budgets only; the images, labels and key are shared (in_axes None).
sweep = jax.jit(jax.vmap(pgd_at_budget, in_axes=(0, None, None, None)))
x_adv_sweep = sweep(epsilons, x_test, y_test, key)  # [budgets, images, 28, 28, 1]
fgsm_sweep = jax.jit(
    advjax.over_epsilons(lambda eps: advjax.fgsm(eps), epsilons), static_argnums=0
)(logits_fn, x_test, y_test, key=key)

pgd_curve = [accuracy(x) for x in x_adv_sweep]
fgsm_curve = [accuracy(x) for x in fgsm_sweep]
for eps, a_pgd, a_fgsm in zip(epsilons.tolist(), pgd_curve, fgsm_curve, strict=True):
    print(f"eps {eps:.2f}: FGSM {a_fgsm:6.1%}   PGD-10 {a_pgd:6.1%}")

# %% [markdown]
# ### The robustness curve
#
# Robust accuracy against the budget. The model was trained at 0.1; beyond that its accuracy
# falls quickly. PGD is the stronger attack, so its curve lies below FGSM's: both are upper
# bounds on the true robust accuracy, and the lower one is the more honest.

# %%
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(epsilons, 100 * np.array(fgsm_curve), "o-", label="FGSM")
ax.plot(epsilons, 100 * np.array(pgd_curve), "s-", label="PGD-10")
ax.axvline(0.1, color="grey", linestyle=":", label="training budget")
ax.set_xlabel("Linf budget (eps)")
ax.set_ylabel("accuracy (%)")
ax.set_ylim(0, 100)
ax.set_title("Robustness curve, 500 test images")
ax.legend()
plt.show()

# %% [markdown]
# ## 3. jax.vmap over single examples
#
# An attack written for a batch also runs on one image: add a batch axis of 1 inside the mapped
# function. With one key per image, each example's adversarial point is its own business: it
# does not depend on which other images share the batch (the property `evaluate` relies on to
# drop finished images and re-batch the rest). We map over the first 32 test images, then over
# the same images (and their keys) in reverse order, and compare image by image.
#
# `advjax.attacks.per_example_keys(attack)` packages the same thing (one key per example) as an
# attack that takes the whole batch. Under a plain `jax.vmap` the attack's input checks still
# run once for the batch, and a failing one names the values of the first bad example.

# %%
keys = jax.random.split(key, 32)


def attack_one_image(x, y, k):
    return pgd(logits_fn, x[None], y[None], key=k)[0]


per_image = jax.jit(jax.vmap(attack_one_image))
x_adv_32 = per_image(x_test[:32], y_test[:32], keys)
x_adv_reversed = per_image(x_test[:32][::-1], y_test[:32][::-1], keys[::-1])[::-1]
print(f"robust accuracy on the 32 images, one key per image: {accuracy(x_adv_32, y_test[:32]):.1%}")
difference = float(jnp.abs(x_adv_32 - x_adv_reversed).max())
print(f"same images in reverse order: largest difference {difference}")

# %% [markdown]
# ## 4. jax.grad through an attack
#
# The robust loss of adversarial training is `mean CE(f_theta(x_adv(theta)), y)`. Written as a
# function of the parameters, with the attack inside, `jax.grad` differentiates it. Attacks
# return their points with stopped gradients, so the gradient is the one Danskin's theorem
# prescribes: the gradient of the loss at the (fixed) adversarial points. This is exactly what
# `train.pgd_at` computes in every training step.


# %%
def robust_loss(params, x, y, key):
    model_fn = models.eval_logits_fn(model, {"params": params})
    x_adv = advjax.pgd(0.1, steps=10)(model_fn, x, y, key=key)
    return jnp.mean(losses.ce(model_fn(x_adv), y))


robust_loss_and_grad = jax.jit(jax.value_and_grad(robust_loss))
x_batch, y_batch = x_test[:100], y_test[:100]
loss_before, grads = robust_loss_and_grad(params, x_batch, y_batch, key)
grad_norm = float(optax.global_norm(grads))

# One plain gradient step on the robust loss, then the robust loss again (a fresh attack).
stepped = jax.tree.map(lambda p, g: p - 0.05 * g / grad_norm, params, grads)
loss_after, _ = robust_loss_and_grad(stepped, x_batch, y_batch, key)
print(f"robust loss {float(loss_before):.4f}, gradient norm {grad_norm:.4f}")
print(f"after one normalised step of 0.05 against the gradient: {float(loss_after):.4f}")

# %% [markdown]
# The robust loss, recomputed with a fresh attack on the updated model, went down: the gradient
# obtained through the attack is a descent direction of the robust objective.
#
# ## 5. A custom loss
#
# `loss=` takes a name (`"ce"`, `"cw"`, `"dlr"`, ...), a function of `advjax.losses` (e.g.
# `losses.cw_margin`, the Carlini-Wagner margin) or any per-example function
# `(logits[B, K], y[B]) -> [B]` that the attack maximises. Below: cross-entropy (from the sweep
# above), the CW margin, and a loss written here, a *soft* margin `logsumexp_{j != y} z_j - z_y`
# (smooth like cross-entropy, but it does not saturate once the true class is already losing).


# %%
def soft_margin(logits, y):
    """logsumexp over the wrong classes minus the true logit, per example."""
    true = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    wrong = jnp.where(jax.nn.one_hot(y, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return jax.nn.logsumexp(wrong, axis=-1) - true


index_015 = int(np.argmin(np.abs(np.asarray(epsilons) - 0.15)))  # in the sweep: eps 0.15
adversarial = {"ce": x_adv_sweep[index_015]}  # the cross-entropy attack already ran there
for name, loss in [("cw", losses.cw_margin), ("soft margin", soft_margin)]:
    attack = jax.jit(advjax.pgd(0.15, steps=10, loss=loss), static_argnums=0)
    adversarial[name] = attack(logits_fn, x_test, y_test, key=key)
broken = {}
for name, x_loss in adversarial.items():
    broken[name] = np.asarray(jnp.argmax(logits_fn(x_loss), -1) != y_test)
    print(f"PGD-10 at eps 0.15 with loss {name!r}: robust accuracy {accuracy(x_loss):.1%}")
any_broken = np.any(list(broken.values()), axis=0)
print(f"per image, worst case over the three losses: {1 - any_broken.mean():.1%}")
only = {
    name: int((hit & ~np.any([b for n, b in broken.items() if n != name], axis=0)).sum())
    for name, hit in broken.items()
}
print(f"images broken by one loss only: {only}")

# %% [markdown]
# When the losses break different images (the last line counts those broken by one loss only),
# the per-image worst case over several attacks is lower than any single one: that is why
# evaluations such as AutoAttack run an ensemble of attacks and losses.
#
# ## 6. A custom threat model: a per-pixel weighted Linf ball
#
# A `ThreatModel` carries everything the generic attacks (PGD, APGD, FGSM, BIM, MI-FGSM) need:
# how to measure a perturbation (`norm`), project onto the ball (`project`), the steepest-ascent
# step (`direction`) and a random start (`random_init`). Here the attacker may change each
# pixel by at most `eps * w[pixel]`, with `w = 1` in the central 14 x 14 square and `w = 0.25`
# elsewhere. Its norm is `max |delta / w|`, so "norm at most eps" is exactly the constraint;
# the attacks' output check verifies every returned point against it.

# %%
weights = jnp.full((28, 28, 1), 0.25).at[7:21, 7:21].set(1.0)


def per_example(eps, like):
    """A scalar or per-example [B] budget, shaped to broadcast against ``like``."""
    eps = jnp.asarray(eps, like.dtype)
    return eps.reshape(eps.shape + (1,) * (like.ndim - eps.ndim))


def weighted_norm(delta):
    return jnp.max(jnp.abs(delta / weights).reshape(delta.shape[0], -1), axis=-1)


def weighted_project(delta, eps):
    bound = per_example(eps, delta) * weights
    return jnp.clip(delta, -bound, bound)


def weighted_random_init(key, shape, eps):
    unit = jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
    return unit * per_example(eps, unit) * weights


centre_ball = advjax.ThreatModel(
    name="centre_weighted_linf",
    norm=weighted_norm,
    project=weighted_project,
    direction=lambda grad: weights * jnp.sign(grad),
    random_init=weighted_random_init,
    dual_norm=lambda g: jnp.sum(jnp.abs(g * weights).reshape(g.shape[0], -1), axis=-1),
)

eps = 0.2
attack = jax.jit(advjax.pgd(eps, steps=10, norm=centre_ball), static_argnums=0)
x_centre = attack(logits_fn, x_test, y_test, key=key)
delta = x_centre - x_test
index_02 = int(np.argmin(np.abs(np.asarray(epsilons) - eps)))
print(f"PGD-10, plain Linf ball, eps {eps}: robust accuracy {pgd_curve[index_02]:.1%}")
print(f"PGD-10, centre-weighted ball, eps {eps}: robust accuracy {accuracy(x_centre):.1%}")
print(f"largest weighted norm {float(weighted_norm(delta).max()):.4f} (budget {eps})")
outside = np.asarray(jnp.abs(delta) * (weights < 1))
print(f"largest change outside the centre: {outside.max():.4f} (allowed {0.25 * eps})")

# %% [markdown]
# The weighted ball is a subset of the plain Linf ball of the same radius: the attacker is
# weaker, and the robust accuracy should be no lower than in the plain ball (compare the first
# two lines printed). The last two lines check the constraint on the returned points.
#
# ## 7. Adversarial examples
#
# The first eight test images, their PGD-10 adversarial versions at eps 0.2 in the plain Linf
# ball and in the centre-weighted ball, and the perturbations (white = 0, blue = brighter,
# red = darker). Titles give the model's prediction.

# %%
x_plain = x_adv_sweep[index_02]
rows = [
    ("clean", x_test),
    ("Linf 0.2", x_plain),
    ("delta", x_plain - x_test),
    ("weighted 0.2", x_centre),
    ("delta", delta),
]
fig, axes = plt.subplots(len(rows), 8, figsize=(10, 6.6))
for row, (label, images) in zip(axes, rows, strict=True):
    is_delta = label == "delta"
    predictions = None if is_delta else np.asarray(jnp.argmax(logits_fn(images[:8]), -1))
    for i, ax in enumerate(row):
        image = np.asarray(images[i, :, :, 0])
        if is_delta:
            ax.imshow(image, cmap="RdBu", vmin=-eps, vmax=eps)
        else:
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"pred {predictions[i]}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(label, fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# In the weighted ball the perturbation is concentrated in the centre square, where the digit is;
# outside it the attacker only has a quarter of the budget. Every figure above was computed by
# this notebook; rerun it to reproduce them (the keys are fixed).
