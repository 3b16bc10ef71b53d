#!/usr/bin/env python3
"""Dendritic layers for PyTorch that export to the ONNX pattern dendra imports as dendritic layers
(docs/dendritic-onnx.md).

NOT RUN YET: this file was written in a session without torch (and without a GPU machine), so neither its
training nor its torch.onnx.export has been exercised. test/compiler/dendritic-import.test.ts builds, node by
node, the graph this forward is written to export to and checks dendra's import of it against ONNX Runtime
and the formulas below; the first real export should be imported (`importModel` or `dendra compile --device
taox-dendrite`) before it is relied on.

The model is common/dendrite.ts (docs/dendrites.md) with no device variation and kappa = 1. A layer of B
branches, input i feeding branch b(i) for every neuron:

    z_bj = sum_{i in b} x_i W_ij          u = z_bj / F          y_bj = F * H(u)
    x_j  = sum_b y_bj + bias_j            out_j = soma(x_j)
    H(u) = sign(u) * i(a|u|) / a          (0 for u < 0 when rectify)
    exponential       i(v) = v/R + (1 - 1/R) (e^{alpha v} - 1)/(e^alpha - 1) for v < 1, v above; alpha = 50n/(1-n)
    threshold-linear  i(v) = v/R below `threshold`, v above
    soma              relu(x) | scale * max(2 sigmoid(x/scale - theta) - 1, 0) | x

n is `nonlinearity`, R `on_off_ratio`, a `ratio` (V_applied / V_on), F `full_scale`. The forward uses only the
ops of the pattern; the exponential is written as (e^{alpha(v-1)} - e^{-alpha}) / (1 - e^{-alpha}), the same
function without overflow, with v clamped at 1 inside the exp so the unused branch of the `where` stays finite
(no NaN gradients).

Usage: python3 models/pytorch/dendritic.py model.onnx  (exports an untrained DendriticMLP)
"""

import argparse
import copy
import inspect
import math

import torch
from torch import nn


def branches_contiguous(n, count):
    """Branch of each of n inputs: `count` blocks of consecutive inputs (assign-branches 'contiguous')."""
    return [i * count // n for i in range(n)]


def branches_spatial(c, h, w, count):
    """Branch of each input of a [c, h, w] image: colour channel x vertical strips of columns, the outer strips
    w // strips wide and the rest in the middle (assign-branches 'spatial'). branches_spatial(3, 32, 32, 9) is
    Li et al. 2020's split: columns 1-10, 11-22, 23-32 of each channel."""
    if count % c or count // c > w:
        raise ValueError(f"{count} branches do not split {c} channels into column strips")
    strips = count // c
    widths = [w // strips] * strips
    middles = [(strips - 1) // 2] if strips % 2 else [strips // 2 - 1, strips // 2]
    for k in range(w - sum(widths)):
        widths[middles[k % len(middles)]] += 1
    strip_of = [s for s, width in enumerate(widths) for _ in range(width)]
    return [ch * strips + strip_of[x] for ch in range(c) for _ in range(h) for x in range(w)]


class DendriticLinear(nn.Module):
    """A dense layer whose neurons sum their inputs in branches, each through one dendrite device, then a soma."""

    def __init__(self, in_features, out_features, branch_of, full_scale, nonlinearity=0.1, on_off_ratio=100.0,
                 ratio=1.0, kind="exponential", threshold=0.5, rectify=False, soma="relu", theta=0.1,
                 soma_scale=1.0, bias=True):
        super().__init__()
        branch_of = torch.as_tensor(branch_of, dtype=torch.long)
        if tuple(branch_of.shape) != (in_features,) or int(branch_of.min()) < 0:
            raise ValueError("branch_of needs one branch index >= 0 per input")
        if kind not in ("exponential", "threshold-linear") or soma not in ("relu", "threshold", "none"):
            raise ValueError(f"unknown dendrite kind {kind!r} or soma {soma!r}")
        if not (full_scale > 0 and 0 <= nonlinearity <= 0.93 and on_off_ratio >= 1 and ratio > 0
                and 0 < threshold <= 1 and soma_scale > 0):
            raise ValueError("a dendrite parameter is out of range (see common/dendrite.ts)")
        self.in_features, self.out_features = in_features, out_features
        self.branches = int(branch_of.max()) + 1
        self.full_scale, self.on_off_ratio, self.ratio = float(full_scale), float(on_off_ratio), float(ratio)
        self.kind, self.threshold, self.rectify = kind, float(threshold), bool(rectify)
        self.alpha = 50.0 * nonlinearity / (1.0 - nonlinearity)
        self.soma, self.theta, self.soma_scale = soma, float(theta), float(soma_scale)
        self.register_buffer("onehot", nn.functional.one_hot(branch_of, self.branches).float(), persistent=False)
        bound = 1.0 / math.sqrt(in_features / self.branches)
        self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.register_buffer("block", None)  # set by freeze(), for export only

    def block_weight(self):
        """Wb [in, B*out] (mask * weight): row i holds weight[i] in the columns of its branch, zeros elsewhere."""
        return (self.onehot[:, :, None] * self.weight[:, None, :]).reshape(self.in_features, -1)

    def freeze(self):
        """For export: Wb becomes one constant (an ONNX initializer) instead of ops on the parameters."""
        self.block = self.block_weight().detach().clone()

    def dendrite(self, z):
        """F * H(z / F), elementwise."""
        u = z / self.full_scale
        if self.rectify:
            m, s = torch.relu(u), None
        else:
            s = torch.sign(u)
            m = torch.abs(u)
        v = m * self.ratio
        r = self.on_off_ratio
        if self.kind == "threshold-linear":
            i = torch.where(v >= self.threshold, v, v / r)
        elif self.alpha < 1e-9:
            i = v  # n = 0: a linear device
        else:
            a = self.alpha
            e = torch.exp((torch.clamp(v, max=1.0) - 1.0) * a)
            i = torch.where(v < 1.0, v / r + (e - math.exp(-a)) * ((1.0 - 1.0 / r) / (1.0 - math.exp(-a))), v)
        h = i / self.ratio
        if s is not None:
            h = h * s
        return h * self.full_scale

    def forward(self, x):
        wb = self.block if self.block is not None else self.block_weight()
        z = (x @ wb).reshape(-1, self.branches, self.out_features)
        y = self.dendrite(z).sum(dim=1)
        if self.bias is not None:
            y = y + self.bias
        if self.soma == "relu":
            return torch.relu(y)
        if self.soma == "threshold":
            k = self.soma_scale
            return k * torch.relu(2.0 * torch.sigmoid(y / k - self.theta) - 1.0)
        return y


class DendriticMLP(nn.Module):
    """Li et al. 2020's network, 3x32x32 -> 500 -> 10: 9 spatial branches per hidden neuron (colour x column strips
    10/12/10) and threshold somas; 4 contiguous branches per output neuron and no soma (logits for cross-entropy).
    `dendrite` takes DendriticLinear's device arguments (nonlinearity, on_off_ratio, ratio, kind, threshold,
    rectify)."""

    def __init__(self, shape=(3, 32, 32), hidden=500, classes=10, branches=(9, 4), full_scale=(1.0, 1.0),
                 theta=0.1, **dendrite):
        super().__init__()
        c, h, w = shape
        self.hidden = DendriticLinear(c * h * w, hidden, branches_spatial(c, h, w, branches[0]), full_scale[0],
                                      soma="threshold", theta=theta, **dendrite)
        self.out = DendriticLinear(hidden, classes, branches_contiguous(hidden, branches[1]), full_scale[1],
                                   soma="none", **dendrite)

    def forward(self, x):
        return self.out(self.hidden(torch.flatten(x, 1)))


def export(model, path, in_features, opset=17):
    """Writes `model` to `path` as ONNX in the pattern of docs/dendritic-onnx.md: input 'x' [batch, *in_features]
    with a dynamic batch, output 'y', the TorchScript exporter. Exports a copy in eval mode with every
    DendriticLinear frozen."""
    m = copy.deepcopy(model).eval()
    for layer in m.modules():
        if isinstance(layer, DendriticLinear):
            layer.freeze()
    dims = tuple(in_features) if isinstance(in_features, (tuple, list)) else (int(in_features),)
    x = torch.zeros(2, *dims)
    extra = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with torch.no_grad():
        torch.onnx.export(m, (x,), path, input_names=["x"], output_names=["y"], opset_version=opset,
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, do_constant_folding=True, **extra)


def main():
    p = argparse.ArgumentParser(description="Export an untrained DendriticMLP to ONNX (to try dendra's import).")
    p.add_argument("out", help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17)
    args = p.parse_args()
    torch.manual_seed(0)
    export(DendriticMLP(), args.out, (3, 32, 32), opset=args.opset)


if __name__ == "__main__":
    main()
