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
# # Certify any function
#
# An attack that fails proves nothing: a stronger attack may succeed. A *certificate* does:
# it bounds what a function can output over a whole set of inputs. `advjax.certify` computes
# such bounds as function transforms, like `jax.grad`: `interval_bounds(fn)` and
# `crown_bounds(fn)` read the jaxpr of any pure JAX function and return a function of an input
# box `(lower, upper)` that gives bounds on every output. Nothing is specific to Flax models.
#
# This notebook
#
# 1. bounds a two-layer network written with `jax.numpy` and draws the bounds against sampled
#    outputs;
# 2. trains an MNIST network briefly with IBP certified training (`advjax.train`);
# 3. bounds its logits on one image, and computes certified accuracy with IBP, CROWN-IBP and
#    CROWN beside a PGD attack;
# 4. certifies L2 robustness by randomized smoothing and draws the histogram of radii.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from matplotlib.patches import Rectangle

import advjax
from advjax import certify, data, models, train

# %% [markdown]
# ## 1. Bounds of a hand-written function
#
# A ReLU network from R^2 to R^2 with random weights, written directly with `jnp`. The input
# set is a box; `interval_bounds` propagates intervals layer by layer (IBP), `crown_bounds`
# propagates linear bounds backwards through the ReLUs (CROWN), which is tighter.

# %%
k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
W1 = jax.random.normal(k1, (2, 16))
b1 = 0.1 * jax.random.normal(k2, (16,))
W2 = jax.random.normal(k3, (16, 2)) / 4


def net(x):
    """x[2] -> y[2]: dense, ReLU, dense."""
    return jnp.maximum(x @ W1 + b1, 0.0) @ W2


lower, upper = jnp.array([0.2, -0.1]), jnp.array([0.5, 0.2])
# The bound functions are JAX functions too: jit them like any other.
ibp_lo, ibp_hi = jax.jit(certify.interval_bounds(net))(lower, upper)
crown_lo, crown_hi = jax.jit(certify.crown_bounds(net))(lower, upper)

# 5,000 random inputs in the box (and its 4 corners), through the function itself.
samples = jax.random.uniform(jax.random.key(1), (5000, 2), minval=lower, maxval=upper)
corners = jnp.array([[a, b] for a in (lower[0], upper[0]) for b in (lower[1], upper[1])])
outputs = jax.vmap(net)(jnp.concatenate([samples, corners]))


def show(name, lo, hi):
    ranges = ", ".join(f"y{i} in [{lo[i]:+.3f}, {hi[i]:+.3f}]" for i in range(len(lo)))
    print(f"{name:>8}: {ranges}")


show("IBP", ibp_lo, ibp_hi)
show("CROWN", crown_lo, crown_hi)
show("samples", outputs.min(0), outputs.max(0))
inside = (outputs >= crown_lo - 1e-6) & (outputs <= crown_hi + 1e-6)
print(f"samples inside the CROWN box: {int(jnp.all(inside, axis=1).sum())} of {len(outputs)}")

# %%
fig, (ax_in, ax_out) = plt.subplots(1, 2, figsize=(10, 4))
ax_in.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.3)
ax_in.add_patch(Rectangle(lower, *(upper - lower), fill=False, color="k"))
ax_in.set_title("input box and 5,000 samples")
ax_in.set_xlabel("x0")
ax_in.set_ylabel("x1")
ax_out.scatter(outputs[:, 0], outputs[:, 1], s=2, alpha=0.3, label="net(samples)")
for (lo, hi), colour, name in [
    ((ibp_lo, ibp_hi), "tab:red", "IBP"),
    ((crown_lo, crown_hi), "tab:green", "CROWN"),
]:
    ax_out.add_patch(Rectangle(lo, *(hi - lo), fill=False, color=colour, lw=2, label=name))
ax_out.set_xlim(float(ibp_lo[0]) - 0.1, float(ibp_hi[0]) + 0.1)
ax_out.set_ylim(float(ibp_lo[1]) - 0.1, float(ibp_hi[1]) + 0.1)
ax_out.set_title("outputs and their bounds")
ax_out.set_xlabel("y0")
ax_out.set_ylabel("y1")
ax_out.legend(loc="upper right")
fig.tight_layout()
plt.show()

# %% [markdown]
# Every sampled output lies inside both boxes: the bounds are sound (they hold for *all* inputs
# in the box, not only the samples). The CROWN box is inside the IBP box: the gap between a box
# and the cloud of samples is the price of the relaxation, and CROWN pays less of it.
#
# ## 2. Certified training, briefly
#
# Bounds of a network trained normally are loose. IBP training (Gowal et al. 2018) minimises a
# mix of the clean cross-entropy and the cross-entropy of the *worst-case logits the bounds
# allow*, so the network learns to be certifiable. `train.ibp_schedules` gives the paper's
# warm-up and ramp of the budget and of the weight `kappa`. We train a one-hidden-layer MLP
# for 10 epochs of the 5,000 embedded training images (250 steps of 200 images), ramping eps
# to 0.1 after 25 warm-up steps.

# %%
train_set = data.load_embedded_mnist("train")
test_set = data.load_embedded_mnist("test")
x_test = data.to_device(test_set.images[:300])
y_test = jnp.asarray(test_set.labels[:300])

model = models.get_model("mlp", hidden=(256,))
variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
state = train.TrainState.create(
    apply_fn=model.apply, params=variables["params"], tx=optax.adam(2e-3)
)
eps_schedule, kappa_schedule = train.ibp_schedules(0.1, warmup_steps=25, ramp_steps=125)
result = train.fit(
    state,
    train_set,
    train.make_step(train.ibp_training(eps_schedule, kappa=kappa_schedule)),
    epochs=10,
    batch_size=200,
    key=jax.random.key(1),
    progress=False,
)
for record in result.history[::3]:
    print(
        f"epoch {record['epoch']:2d}: eps {record['train/eps']:.3f}, "
        f"kappa {record['train/kappa']:.2f}, clean acc {record['train/clean_acc']:.1%}, "
        f"IBP-verified acc {record['train/verified_acc']:.1%} (training batches)"
    )
print(f"training: {result.train_seconds:.1f} s")
logits_fn = models.eval_logits_fn(model, result.state.variables())

# %% [markdown]
# The verified accuracy on the training batches is measured at the current (ramped) budget.
#
# ## 3. Bounds of the trained model on one image
#
# The same transforms apply to the Flax model: `logits_fn` is a JAX function like `net` above.
# For the first test image and the Linf ball of radius 0.1 (clipped to `[0, 1]`), the bars show
# each logit's IBP and CROWN interval; the dots are the logits of 2,000 random corners of the
# ball (each pixel at `x - eps` or `x + eps`, clipped), where a piecewise-linear network often
# takes its extreme values.

# %%
eps = 0.1
x0, y0 = x_test[0], int(y_test[0])
box_lo, box_hi = jnp.clip(x0 - eps, 0, 1), jnp.clip(x0 + eps, 0, 1)


def logits_of_one(x):
    """One image [28, 28, 1] -> its 10 logits."""
    return logits_fn(x[None])[0]


ibp_lo, ibp_hi = jax.jit(certify.interval_bounds(logits_of_one))(box_lo, box_hi)
crown_lo, crown_hi = jax.jit(certify.crown_bounds(logits_of_one))(box_lo, box_hi)
signs = jax.random.bernoulli(jax.random.key(2), 0.5, (2000, *x0.shape))
sampled = logits_fn(jnp.where(signs, box_hi, box_lo))
inside = jnp.all((sampled >= crown_lo - 1e-4) & (sampled <= crown_hi + 1e-4))
print(f"label {y0}; every sampled logit inside the CROWN bounds: {bool(inside)}")
print(
    f"mean width of the logit bounds: IBP {float(jnp.mean(ibp_hi - ibp_lo)):.2f}, "
    f"CROWN {float(jnp.mean(crown_hi - crown_lo)):.2f}"
)

classes = np.arange(10)
fig, ax = plt.subplots(figsize=(8, 3.5))
ax.bar(
    classes,
    ibp_hi - ibp_lo,
    bottom=ibp_lo,
    width=0.7,
    color="tab:red",
    alpha=0.25,
    label="IBP bounds",
)
ax.bar(
    classes,
    crown_hi - crown_lo,
    bottom=crown_lo,
    width=0.4,
    color="tab:green",
    alpha=0.6,
    label="CROWN bounds",
)
jitter = np.random.default_rng(0).uniform(-0.12, 0.12, sampled.shape[0])
for c in classes:
    ax.scatter(c + jitter, sampled[:, c], s=1, color="k", alpha=0.2)
ax.scatter([], [], s=4, color="k", label="2,000 sampled corners")
ax.axhline(float(crown_lo[y0]), color="tab:green", ls=":", lw=1)
ax.set_xticks(classes)
ax.set_xlabel(f"class (true class {y0})")
ax.set_ylabel("logit")
ax.set_title(f"Logits over the Linf ball of radius {eps}")
ax.legend(loc="lower left", fontsize=8)
plt.show()

# %% [markdown]
# The image is certified when the lower bound of `z_y - z_j` is positive for every other class
# `j`. Bounding the difference directly (`certify.certified_margins`, with the specification
# folded into the last layer) is at least as tight as comparing the separate logit bounds of the
# plot (the dotted line is the CROWN lower bound of the true logit), and usually tighter.
#
# ## 4. Certified accuracy, beside an attack
#
# `certify.certified_accuracy(logits_fn, x, y, eps, method=...)` returns one boolean per image
# (`eps` may be a vector of budgets). A certified image is robust for sure; an image that PGD
# fails to break may still be breakable. So for every image and budget:
# certified ⇒ not broken by PGD ⇒ correctly classified, and on the totals
# verified accuracy <= PGD accuracy <= clean accuracy. The gap between the first two is what the
# bounds cannot decide.

# %%
budgets = jnp.array([0.02, 0.05, 0.1])
clean = np.asarray(jnp.argmax(logits_fn(x_test), -1) == y_test)
certified = {
    method: np.asarray(
        certify.certified_accuracy(logits_fn, x_test, y_test, budgets, method=method)
    )
    for method in ("ibp", "crown-ibp", "crown")
}
pgd_sweep = jax.jit(
    advjax.over_epsilons(lambda e: advjax.pgd(e, steps=20), budgets), static_argnums=0
)
x_adv = pgd_sweep(logits_fn, x_test, y_test, key=jax.random.key(3))
not_broken = np.asarray(jnp.argmax(jax.vmap(logits_fn)(x_adv), -1) == y_test)

print(f"clean accuracy: {clean.mean():.1%} ({len(clean)} test images)")
print(" eps    IBP  CROWN-IBP  CROWN  PGD-20")
for i, e in enumerate(budgets.tolist()):
    row = "  ".join(f"{certified[m][i].mean():6.1%}" for m in certified)
    print(f"{e:.2f} {row}  {not_broken[i].mean():6.1%}")
violations = sum(int((certified[m] & ~not_broken).sum()) for m in certified)
print(f"images certified but broken by PGD (must be 0): {violations}")

# %% [markdown]
# Read the table column by column: each certification method gives a lower bound on the true
# robust accuracy, PGD an upper bound; the true figure lies in between. CROWN-IBP and CROWN are
# usually tighter than IBP and cost more (CROWN: one backward pass per hidden neuron). For a
# network with one hidden layer, CROWN-IBP and full CROWN coincide: the first layer's
# pre-activation bounds, the only ones CROWN would refine, are already exact under IBP.
# Certification works this well only because the network was trained for it: section 5
# certifies a network trained without IBP for contrast.
#
# ## 5. Randomized smoothing: certified L2 radii
#
# Randomized smoothing (Cohen et al. 2019) certifies the *smoothed* classifier
# `g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c)`: if the top class has probability at least
# `p_A` under the noise, `g` is constant in the L2 ball of radius `sigma * Phi^-1(p_A)`.
# `certify.smooth_certify` estimates a lower confidence bound on `p_A` from `n` noise samples
# (Clopper-Pearson at level `alpha`) and returns the class and the radius, or abstains (-1).
#
# The base classifier should be trained under the same noise (`train.gaussian_noise_training`).
# We train the same MLP architecture for 3 epochs with `sigma = 0.25`. For contrast, the first
# lines printed below certify this network and the IBP-trained one in the Linf ball with
# CROWN-IBP: bounds that are tight on a network trained for them are loose on one that was not.
# Then we certify the first 100 test images by smoothing, with `n = 1000` samples each.

# %%
sigma, n, alpha = 0.25, 1000, 0.001
noise_state = train.TrainState.create(
    apply_fn=model.apply, params=variables["params"], tx=optax.adam(1e-3)
)
noisy = train.fit(
    noise_state,
    train_set,
    train.make_step(train.gaussian_noise_training(sigma)),
    epochs=3,
    batch_size=100,
    key=jax.random.key(4),
    progress=False,
)
base_fn = models.eval_logits_fn(model, noisy.state.variables())
for name, fn in [("IBP-trained", logits_fn), ("noise-trained", base_fn)]:
    verified = certify.certified_accuracy(fn, x_test, y_test, 0.05, method="crown-ibp")
    print(f"{name} network: Linf eps 0.05 CROWN-IBP-certified accuracy {verified.mean():.1%}")

predictions, radii = [], []
for i in range(100):
    c, r = certify.smooth_certify(
        base_fn, x_test[i], sigma=sigma, n0=100, n=n, alpha=alpha, key=jax.random.key(100 + i)
    )
    predictions.append(c)
    radii.append(r)
predictions, radii = np.array(predictions), np.array(radii)
labels = np.asarray(y_test[:100])

thresholds = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
at_radii = certify.certified_accuracy_at_radii(predictions, radii, labels, thresholds)
for r, a in zip(thresholds, at_radii, strict=True):
    print(f"certified accuracy at L2 radius {r:.1f}: {a:.0%}")
print(
    f"abstained: {int((predictions == certify.ABSTAIN).sum())}, "
    f"wrong class: {int(((predictions != labels) & (predictions >= 0)).sum())}"
)
largest = sigma * float(jax.scipy.stats.norm.ppf(alpha ** (1 / n)))
print(f"largest radius any image can get with n={n}, alpha={alpha}: {largest:.3f}")
print(f"images certified at that largest radius: {int(np.isclose(radii, largest).sum())}")

# %%
correct = predictions == labels
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.hist(
    [radii[correct], radii[~correct]],
    bins=np.linspace(0, largest * 1.05, 22),
    stacked=True,
    label=["certified, correct class", "abstained or wrong"],
    color=["tab:green", "tab:red"],
)
ax.axvline(largest, color="k", ls=":", label="largest radius for this n")
ax.set_xlabel("certified L2 radius")
ax.set_ylabel("images")
ax.set_title(f"Randomized smoothing, sigma={sigma}, n={n}, 100 test images")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The images at the right edge (their count is printed above) had all `n` noisy copies
# classified alike: their radius is limited by the number of samples, not by the model (the
# dotted line, computed above from `n` and `alpha`). More samples push that limit out, at a
# linear cost. Abstentions and wrong classes get radius 0. The guarantee holds with probability
# `1 - alpha` per image, for the smoothed classifier (not the base network).
