"""PyTorch references for the benchmarks: Flax weights copied into torch layers, a PGD loop."""

from __future__ import annotations


def copy_flax_weights(model, params, *, convs=("conv1", "conv2"), denses=("fc1", "fc2")):
    """Loads ``params`` (Flax: conv kernels HWIO, dense kernels [in, out]) into ``model``.

    PyTorch wants conv weights OIHW and dense weights [out, in]; biases are the same. The
    model must flatten in NHWC order, as Flax does, for the first dense layer to match.
    Returns ``model`` with gradients of its parameters left on (training benchmarks need them).
    """
    import numpy as np
    import torch

    with torch.no_grad():
        for names, layout in ((convs, (3, 2, 0, 1)), (denses, (1, 0))):
            for name in names:
                layer = getattr(model, name)
                kernel = np.asarray(params[name]["kernel"]).transpose(layout)
                layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
                layer.bias.copy_(torch.from_numpy(np.asarray(params[name]["bias"])))
    return model


def torch_pgd(model, x, y, *, eps, steps, step_size, generator):
    """Hand-written PGD-Linf: random start, sign steps, projection onto the ball and [0, 1]."""
    import torch

    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps, generator=generator)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv + step_size * grad.sign()
            x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)
    return x_adv.detach()


def torch_fast_mnist(variables):
    """The fast-AT MNIST net (``advjax.models`` ``fast_mnist``) in PyTorch with Flax weights.

    NCHW inputs; flattens in NHWC order, as the Flax model does.
    """
    import torch
    from torch import nn

    class FastMNISTNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 4, stride=2, padding=1)
            self.conv2 = nn.Conv2d(16, 32, 4, stride=2, padding=1)
            self.fc1 = nn.Linear(7 * 7 * 32, 100)
            self.fc2 = nn.Linear(100, 10)

        def forward(self, x):
            x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
            x = x.permute(0, 2, 3, 1).flatten(1)
            return self.fc2(torch.relu(self.fc1(x)))

    return copy_flax_weights(FastMNISTNet(), variables["params"])
