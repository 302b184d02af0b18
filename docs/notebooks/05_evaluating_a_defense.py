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
# # Evaluating a defense
#
# Input preprocessing (JPEG compression, bit-depth reduction, random resizing...) is an old
# idea for defending a classifier, and most such defenses fall to attacks that are built
# *against* them (Athalye, Carlini & Wagner 2018). This notebook evaluates one the way it should
# be evaluated:
#
# 1. the **naive** attack, PGD through the defense's own gradient, which JPEG's rounding
#    makes zero;
# 2. the **gradient-masking diagnostics** of `advjax.evaluation`, which notice it;
# 3. **BPDA** (`advjax.attacks.bpda`): the real defense in the forward pass, a differentiable
#    approximation in the backward pass;
# 4. a black-box attack (Square), which needs no gradient at all, and **AutoAttack**;
# 5. a randomized defense, attacked with and without **EOT** (`advjax.attacks.eot`).
#
# The numbers are robust accuracies on the first 100 embedded MNIST test images at the usual
# MNIST budget, Linf eps = 0.3 (section 5 uses 0.1), for a normally trained (undefended)
# network put behind the defense.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import advjax
from advjax import attacks, data, defenses, evaluation, models, train

# %% [markdown]
# ## The model and the defense
#
# The fast-AT MNIST network trained normally for two epochs, then JPEG compression at quality
# 50 in front of it: `defenses.preprocess(logits_fn, defenses.jpeg(50))` is again a plain
# function `x -> logits`, so every attack accepts it.

# %%
train_set = data.load_embedded_mnist("train")
test_set = data.load_embedded_mnist("test")
x = data.to_device(test_set.images[:100])
y = jnp.asarray(test_set.labels[:100])
eps = 0.3

model = models.get_model("fast_mnist")
variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
state = train.TrainState.create(
    apply_fn=model.apply, params=variables["params"], tx=optax.adam(1e-3)
)
result = train.fit(
    state,
    train_set,
    train.make_step(train.standard()),
    epochs=2,
    batch_size=100,
    key=jax.random.key(1),
    progress=False,
)
logits_fn = models.eval_logits_fn(model, result.state.variables())
defended = defenses.preprocess(logits_fn, defenses.jpeg(50))


def correct(fn, images):
    """Per image: does ``fn`` classify it correctly? (numpy bool [N])"""
    return np.asarray(jnp.argmax(fn(images), axis=-1) == y)


robust = {"clean": correct(defended, x)}  # per image, for the summary at the end
print(
    f"clean accuracy: undefended {correct(logits_fn, x).mean():.0%}, "
    f"behind JPEG-50 {robust['clean'].mean():.0%}"
)
pgd = jax.jit(advjax.pgd(eps, steps=40, step_size=eps / 10), static_argnums=0)
key = jax.random.key(2)
x_undefended = pgd(logits_fn, x, y, key=key)
print(f"undefended model under PGD-40 at eps {eps}: {correct(logits_fn, x_undefended).mean():.0%}")

# %% [markdown]
# ## 1. The naive attack: PGD through the defense's gradient
#
# PGD-40 differentiates the defended model as it is. JPEG rounds its DCT coefficients, and
# the derivative of rounding is zero almost everywhere.

# %%
x_naive = pgd(defended, x, y, key=key)
robust["naive PGD"] = correct(defended, x_naive)
print(f"naive PGD-40 through JPEG: robust accuracy {robust['naive PGD'].mean():.0%}")

# %% [markdown]
# Taken at face value this says that JPEG makes the network robust. It does not: the attack
# never received a useful gradient, and only its random start moved the images.
#
# ## 2. The gradient-masking diagnostics
#
# `evaluation.gradient_masking_checks` looks at the model, not at an attack: the share of
# images whose input gradient is exactly zero, non-finite gradients or logits, and logits that
# change between two identical calls. (`advjax.evaluate` and `evaluation.autoattack` run it
# for every report and list its warnings there.)

# %%
figures, masking_warnings = evaluation.gradient_masking_checks(defended, x, y)
print(f"share of images with an all-zero input gradient: {figures['zero_gradient_share']:.0%}")
for warning in masking_warnings:
    print("WARNING:", warning)

# %% [markdown]
# ## 3. BPDA: differentiate an approximation, attack the real thing
#
# Backward Pass Differentiable Approximation (Athalye et al. 2018): `attacks.bpda(f, approx)`
# computes `f` in the forward pass and the gradient of `approx` in the backward pass. Here the
# approximation is the same JPEG pipeline with `round(t)` replaced by the smooth
# `t + (round(t) - t)^3` (Shin & Song 2017, `rounding="cubic"`). The forward pass is the
# real JPEG, so a point that fools the BPDA model fools the defended model.
# (`defended.adaptive()` builds the same thing for any chain of preprocessors.)

# %%
bpda_jpeg = attacks.bpda(
    lambda images: defenses.jpeg_compress(images, 50),
    lambda images: defenses.jpeg_compress(images, 50, rounding="cubic"),
)


def bpda_target(images):
    return logits_fn(bpda_jpeg(images))


x_bpda = pgd(bpda_target, x, y, key=key)
robust["BPDA PGD"] = correct(defended, x_bpda)  # scored on the real defended model
print(f"PGD-40 with BPDA: robust accuracy {robust['BPDA PGD'].mean():.0%}")
figures, masking_warnings = evaluation.gradient_masking_checks(bpda_target, x, y)
print(
    f"BPDA target: all-zero input gradients on {figures['zero_gradient_share']:.0%} of the "
    f"images, {len(masking_warnings)} warning(s)"
)

# %% [markdown]
# ## 4. A black-box attack, and AutoAttack
#
# Square (Andriushchenko et al. 2020) only queries the model's outputs, so rounding cannot hide
# anything from it. With 1,000 queries per image on the *naive* defended model, no BPDA:

# %%
square = jax.jit(advjax.square(eps, queries=1000), static_argnums=0)
x_square = square(defended, x, y, key=key)
robust["Square (black box)"] = correct(defended, x_square)
print(f"Square, 1,000 queries: robust accuracy {robust['Square (black box)'].mean():.0%}")
figures, masking_warnings = evaluation.gradient_masking_checks(
    defended,
    x,
    y,
    black_box_accuracy=float(robust["Square (black box)"].mean()),
    white_box_accuracy=float(robust["naive PGD"].mean()),
)
for warning in masking_warnings:
    print("WARNING:", warning)

# %% [markdown]
# A black-box attack beating a white-box one is the second masking sign: with the model's real
# gradient, the white-box attack should be the stronger. AutoAttack (Croce & Hein 2020) runs
# APGD-CE, APGD-T, FAB-T and Square, each on the images the earlier ones left, and runs these
# checks on every report. Here it runs on the BPDA target, where the gradient attacks see an
# informative gradient; its points are scored on the real defended model.

# %%
aa = evaluation.autoattack(bpda_target, x, y, eps=eps, key=jax.random.key(3))
for stage, stats in aa.per_attack.items():
    print(
        f"{stage:>8}: broke {stats['broken']:3d}, robust accuracy after it "
        f"{stats['robust_accuracy_after']:.0%}"
    )
print("warnings:", aa.warnings or "none")
robust["AutoAttack (BPDA)"] = correct(defended, jnp.asarray(aa.x_adv))

# %% [markdown]
# ## 5. A randomized defense: EOT
#
# Randomized preprocessing gives every query a different answer. Attacking one random draw
# per step follows a noisy gradient; Expectation over Transformation averages the model over
# `n` draws per query (`attacks.eot(attack, n)`), which is the gradient of the *expected*
# prediction. The defense: random resizing and padding (Xie et al. 2018), which is
# differentiable, so no BPDA is needed. We attack it with 1 and with 10 draws per step, at the
# smaller budget eps = 0.1 so that the defense keeps some accuracy and the two attacks can
# differ. Randomized predictions are scored as the mean over 10 fresh draws.

# %%
randomized = defenses.preprocess(logits_fn, defenses.random_resize_pad(0.8))
print("randomized:", randomized.randomized, "| name:", randomized.name)


def accuracy_over_draws(images, draws=10):
    """Mean accuracy of the randomized defense over fresh random draws."""
    keys = jax.random.split(jax.random.key(4), draws)
    return float(np.mean([correct(lambda z, k=k: randomized(z, k), images) for k in keys]))


eot_results = {"clean": accuracy_over_draws(x)}
pgd10 = advjax.pgd(0.1, steps=10, step_size=0.1 / 4)
for draws in (1, 10):
    x_eot = attacks.eot(pgd10, draws)(randomized, x, y, key=key)
    eot_results[f"PGD-10, {draws} draw(s) per step"] = accuracy_over_draws(x_eot)
for name, value in eot_results.items():
    print(f"{name:>28}: accuracy {value:.1%}")

# %% [markdown]
# Compare the two attacks' figures: the attack that averages over draws is the stronger one, and
# the figure without EOT overstates the defense. `defenses.evaluate_defense` warns
# (`RandomizedWithoutEOTWarning`) when a randomized defense is evaluated with one draw.
#
# ## Summary: which number to report
#
# Back to JPEG-50 at eps 0.3: each attack's robust accuracy, and per image the worst case over
# all of them.

# %%
names = list(robust)
worst = np.all([robust[name] for name in names], axis=0)
fig, ax = plt.subplots(figsize=(7, 3))
values = [100 * robust[name].mean() for name in names] + [100 * worst.mean()]
labels = names + ["worst case of all"]
bars = ax.barh(labels[::-1], values[::-1], color="tab:blue")
ax.bar_label(bars, fmt="%.0f%%", padding=3)
ax.set_xlim(0, 110)
ax.set_xlabel(f"accuracy behind JPEG-50 (%), Linf eps {eps}, {len(y)} images")
fig.tight_layout()
plt.show()
for name, value in zip(labels, values, strict=True):
    print(f"{name:>20}: {value:.0f}%")

# %% [markdown]
# How to read these numbers:
#
# - Every robust accuracy measured with an attack is an **upper bound** on the true robust
#   accuracy: the attack may simply have failed. A weak or misled attack gives a high number that
#   **flatters the defense**. The naive figure is such a number: the attack was blind, not the
#   model robust.
# - The figure to report is the **per-image worst case over all attacks** ("worst case of all"),
#   here including the adaptive ones (BPDA, AutoAttack on the BPDA target) and a gradient-free
#   one (Square). It is still an upper bound, only a tighter one.
# - A large gap between the naive and the adaptive figures, all-zero input gradients, or a
#   black-box attack beating a white-box one are signs of **gradient masking**: the defense
#   hides the gradient instead of removing the adversarial examples. The diagnostics above
#   reported the last two.
# - A lower bound needs a certificate instead of an attack (see the notebook
#   `04_certify_any_function`).
