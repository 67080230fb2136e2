"""A network with normalization and dropout beside PyTorch: examples/cancer_norm_drop.yaml
(30 → 32 relu → batchnorm → dropout 0.2 → 32 relu → layernorm → dropout 0.2 → 1 sigmoid,
binary cross-entropy, adam) on the breast-cancer data, and the same network in PyTorch.

    python examples/compare_torch.py --seeds 10     # needs PyTorch: pip install torch
    python examples/compare_torch.py --quick        # 2 seeds, 3 epochs, 1 lockstep epoch

For each seed s the two start from the same weights (the module's init_params(s), copied
into torch.nn.Linear, LayerNorm and BatchNorm1d), train with the same optimizer (adam
against torch.optim.Adam, same settings) on the same batches in the same order (fit's:
default_rng(s + epoch).permutation, a last batch of one left out with batchnorm), in
float64. Only the dropout masks differ: the module draws them from its state's
generator, PyTorch from torch.manual_seed(s). The table gives the test accuracy and the
test loss (inference mode: batchnorm's running statistics, no dropout) as mean ± sd over
the seeds; a difference is "within noise" when it is under two standard errors.

The lockstep column trains both from seed 0's weights through the same batches with the
*same* masks: before each `step`, a copy of the module's generator replays the masks the
step draws (one `random` call per dropout layer, in layer order; kept where u ≥ rate,
scaled by 1/(1 − rate)), and PyTorch multiplies by them. What is left is arithmetic:
the largest difference of any weight, gain, shift or running statistic at the end.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import realdata as rd
from train_breast_cancer import load_split

NAME, EPOCHS, BATCH_SIZE = "cancer_norm_drop", 50, 32
LOCKSTEP_EPOCHS = 10
INSTALL_HINT = "PyTorch is not installed: pip install torch (the CPU build is enough)"


# ---------------------------------------------------------------------------------------
# the twin: the spec's layers in torch, the module's parameters copied in


def torch_twin(spec, params: dict[str, np.ndarray]):
    """A torch.nn.Module with the spec's layers and a copy of `params` (float64).

    Its forward(X, masks=None) returns the output layer's pre-activation Z (the logits);
    `masks` is a list of one array per dropout layer, used instead of drawing.
    """
    import torch

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList()
            self.plan = []  # (kind, detail) per layer
            width = spec.input
            f64 = dict(dtype=torch.float64)
            for l, layer in enumerate(spec.layers, start=1):
                if layer.kind == "dense":
                    linear = torch.nn.Linear(width, layer.units, **f64)
                    _copy(linear.weight, params[f"W{l}"].T)
                    _copy(linear.bias, params[f"b{l}"])
                    self.layers.append(linear)
                    output = l == len(spec.layers)  # the loss takes its logits
                    activation = None if output else _activation(layer.activation.name)
                    self.plan.append(("dense", (activation, layer.residual)))
                    width = layer.units
                elif layer.kind == "norm" and not layer.custom:
                    norm = _norm(layer.name, width, dict(layer.params))
                    _copy(norm.weight, params[f"gamma{l}"])
                    if getattr(norm, "bias", None) is not None:
                        _copy(norm.bias, params[f"beta{l}"])
                    if layer.name == "batchnorm":
                        _copy(norm.running_mean, params[f"mean{l}"])
                        _copy(norm.running_var, params[f"var{l}"])
                    self.layers.append(norm)
                    self.plan.append(("norm", layer.name))
                elif layer.kind == "dropout":
                    self.layers.append(torch.nn.Identity())
                    self.plan.append(("dropout", layer.rate))
                else:
                    raise ValueError(f"no torch twin for layer {l}: {layer}")

        def forward(self, X, masks=None):
            masks = list(masks) if masks is not None else None
            last = len(self.plan) - 1
            for i, (module, (kind, detail)) in enumerate(
                zip(self.layers, self.plan, strict=True)
            ):
                if kind == "dense":
                    activation, residual = detail
                    Z = module(X)
                    if i == last:
                        return Z
                    A = activation(Z)
                    X = X + A if residual else A
                elif kind == "norm":
                    X = module(X)
                elif masks is not None:  # dropout with the given mask
                    X = X * torch.from_numpy(masks.pop(0))
                else:
                    X = torch.nn.functional.dropout(X, detail, self.training)
            raise AssertionError("the last layer is dense")

    return Twin()


def _copy(tensor, array) -> None:
    import torch

    with torch.no_grad():
        tensor.copy_(torch.from_numpy(np.ascontiguousarray(array)))


def _activation(name: str):
    import torch

    table = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
    if name == "identity":
        return lambda z: z
    if name not in table:
        raise ValueError(f"no torch twin for the hidden activation {name!r}")
    return table[name]


def _norm(name: str, width: int, settings: dict[str, float]):
    import torch

    f64 = dict(dtype=torch.float64)
    if name == "layernorm":
        return torch.nn.LayerNorm(width, eps=settings["eps"], **f64)
    if name == "rmsnorm":
        return torch.nn.RMSNorm(width, eps=settings["eps"], **f64)
    if name == "batchnorm":
        momentum = settings["momentum"]
        return torch.nn.BatchNorm1d(
            width, eps=settings["eps"], momentum=momentum, **f64
        )
    raise ValueError(f"no torch twin for the norm {name!r}")


def torch_loss(twin, model: ModuleType, X, Y, masks=None):
    """The spec's loss on the twin's output, as the module computes it (a sum over the
    outputs, a mean over the batch; l2/2·Σ‖W‖² over the dense weights)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    Z = twin(X, masks)
    m = Z.shape[0]
    if model.LOSS == "binary_crossentropy":
        loss = F.binary_cross_entropy_with_logits(Z, Y, reduction="sum") / m
    elif model.LOSS == "categorical_crossentropy":
        loss = F.cross_entropy(Z, Y)  # integer labels
    else:
        raise ValueError(f"no torch twin for the loss {model.LOSS!r}")
    if model.L2:
        weights = [
            mod.weight for mod in twin.layers if isinstance(mod, torch.nn.Linear)
        ]
        loss = loss + model.L2 / 2 * sum(torch.sum(w * w) for w in weights)
    return loss


def torch_optimizer(twin, model: ModuleType):
    """torch.optim's optimizer with the module's settings."""
    import torch

    opt = model.OPTIMIZER
    if opt["name"] == "adam":
        return torch.optim.Adam(
            twin.parameters(),
            lr=opt["learning_rate"],
            betas=(opt["beta1"], opt["beta2"]),
            eps=opt["eps"],
        )
    if opt["name"] == "momentum":
        return torch.optim.SGD(
            twin.parameters(),
            lr=opt["learning_rate"],
            momentum=opt["momentum"],
            nesterov=opt["nesterov"],
        )
    return torch.optim.SGD(twin.parameters(), lr=opt["learning_rate"])


def batches(model: ModuleType, n: int, *, epochs: int, batch_size: int, seed: int):
    """The example indices of each batch `fit` trains on, in order."""
    for epoch in range(epochs):
        order = np.random.default_rng(seed + epoch).permutation(n)
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            if len(batch) >= model.MIN_BATCH:  # fit leaves out a last batch of one
                yield batch


def _targets(model: ModuleType, y):
    import torch

    if model.LOSS == "categorical_crossentropy":
        return torch.from_numpy(np.asarray(y, dtype=np.int64))
    return torch.from_numpy(np.asarray(y, dtype=np.float64).reshape(len(y), -1))


def twin_parameters(spec, twin) -> dict[str, np.ndarray]:
    """The twin's weights under the module's names (W{l} as (in, out)), and batchnorm's
    running statistics."""
    out = {}
    layers = zip(spec.layers, twin.layers, strict=True)
    for l, (layer, module) in enumerate(layers, start=1):
        if layer.kind == "dense":
            out[f"W{l}"] = module.weight.detach().numpy().T
            out[f"b{l}"] = module.bias.detach().numpy()
        elif layer.kind == "norm":
            out[f"gamma{l}"] = module.weight.detach().numpy()
            if getattr(module, "bias", None) is not None:
                out[f"beta{l}"] = module.bias.detach().numpy()
            if layer.name == "batchnorm":
                out[f"mean{l}"] = module.running_mean.numpy()
                out[f"var{l}"] = module.running_var.numpy()
    return out


# ---------------------------------------------------------------------------------------
# the runs


@dataclass(frozen=True)
class Score:
    accuracy: float
    loss: float
    seconds: float


def train_symgrad(model, split: rd.Split, *, epochs: int, seed: int) -> Score:
    start = time.perf_counter()
    params = model.init_params(seed)
    model.fit(
        params,
        split.X_train,
        split.y_train,
        epochs=epochs,
        batch_size=BATCH_SIZE,
        seed=seed,
    )
    seconds = time.perf_counter() - start
    accuracy = float(
        np.mean(model.predict(params, split.X_test).ravel() == split.y_test)
    )
    return Score(accuracy, model.loss(params, split.X_test, split.y_test), seconds)


def train_torch(model, spec, split: rd.Split, *, epochs: int, seed: int) -> Score:
    """The twin from init_params(seed), trained on fit's batches; its own masks."""
    import torch

    start = time.perf_counter()
    torch.manual_seed(seed)  # the dropout masks
    twin = torch_twin(spec, model.init_params(seed))
    optimizer = torch_optimizer(twin, model)
    X, Y = torch.from_numpy(split.X_train), _targets(model, split.y_train)
    twin.train()
    n = len(split.X_train)
    for batch in batches(model, n, epochs=epochs, batch_size=BATCH_SIZE, seed=seed):
        index = torch.from_numpy(batch)
        optimizer.zero_grad()
        torch_loss(twin, model, X[index], Y[index]).backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    twin.eval()
    with torch.no_grad():
        X_test = torch.from_numpy(split.X_test)
        loss = float(torch_loss(twin, model, X_test, _targets(model, split.y_test)))
        Z = twin(X_test).numpy()
    if model.LOSS == "categorical_crossentropy":
        prediction = Z.argmax(axis=1)
    else:
        prediction = (Z >= 0).astype(int).ravel()  # σ(z) ≥ 0.5
    return Score(float(np.mean(prediction == split.y_test)), loss, seconds)


def replayed_masks(spec, rng: np.random.Generator, m: int):
    """The masks a step on a batch of m draws from rng, drawn from a copy of it: one
    uniform array per dropout layer, in layer order, kept where u ≥ rate and scaled by
    1/(1 − rate). Returns them and the copy, which is where rng should be after."""
    rng = copy.deepcopy(rng)
    masks, width = [], spec.input
    for layer in spec.layers:
        if layer.kind == "dense":
            width = layer.units
        elif layer.kind == "dropout":
            u = rng.random((m, width))
            masks.append((u >= layer.rate) * (1 / (1 - layer.rate)))
    return masks, rng


def lockstep(model, spec, split: rd.Split, *, epochs: int, seed: int = 0):
    """Both from init_params(seed) through fit's batches with the same dropout masks.

    Returns (max |Δ| over every parameter and running statistic, the number of steps,
    the share of equal test predictions)."""
    import torch

    params = model.init_params(seed)
    twin = torch_twin(spec, params)
    optimizer = torch_optimizer(twin, model)
    state = model.init_state(params, seed)
    X, Y = torch.from_numpy(split.X_train), _targets(model, split.y_train)
    twin.train()
    steps = 0
    n = len(split.X_train)
    for batch in batches(model, n, epochs=epochs, batch_size=BATCH_SIZE, seed=seed):
        masks, after = [], None
        if model.DROPOUT:
            masks, after = replayed_masks(spec, state["rng"], len(batch))
        model.step(params, state, split.X_train[batch], split.y_train[batch])
        if after is not None and (
            after.bit_generator.state != state["rng"].bit_generator.state
        ):
            raise RuntimeError("the step drew more or fewer numbers than replayed")
        index = torch.from_numpy(batch)
        optimizer.zero_grad()
        torch_loss(twin, model, X[index], Y[index], masks).backward()
        optimizer.step()
        steps += 1
    theirs = twin_parameters(spec, twin)
    assert set(theirs) == set(params), (sorted(theirs), sorted(params))
    dw = max(float(np.max(np.abs(params[k] - theirs[k]))) for k in params)
    twin.eval()
    with torch.no_grad():
        Z = twin(torch.from_numpy(split.X_test)).numpy()
    ours = model.predict(params, split.X_test).ravel()
    same = float(np.mean(ours == (Z >= 0).astype(int).ravel()))
    return dw, steps, same


# ---------------------------------------------------------------------------------------
# the table


def _mean_sd(values, digits=3) -> str:
    values = np.asarray(values)
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _difference(ours, theirs, digits=3) -> str:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    diff = ours.mean() - theirs.mean()
    se = np.sqrt(ours.var(ddof=1) / len(ours) + theirs.var(ddof=1) / len(theirs))
    verdict = "within noise" if abs(diff) <= 2 * se else "**outside noise**"
    return f"{diff:+.{digits}f} ± {se:.{digits}f} ({verdict})"


def architecture(spec) -> str:
    """`cancer_norm_drop.yaml`: 30 → 32 relu → batchnorm → dropout 0.2 → …; adam, lr …"""
    parts = [str(spec.input)]
    for layer in spec.layers:
        if layer.kind == "dense":
            residual = " residual" if layer.residual else ""
            parts.append(f"{layer.units} {layer.activation.name}{residual}")
        elif layer.kind == "dropout":
            parts.append(f"dropout {layer.rate:g}")
        else:
            parts.append(layer.name)
    opt = dict(spec.optimizer.params)
    l2 = f", l2 {spec.l2:g}" if spec.l2 else ""
    return (
        f"`{NAME}.yaml`: {' → '.join(parts)}, {spec.loss.name}{l2}; "
        f"{spec.optimizer.name}, lr {opt['learning_rate']:g}"
    )


def table(*, seeds: int, epochs: int, lockstep_epochs: int) -> str:
    import torch

    import symgrad

    model = rd.load_model(NAME)
    spec = symgrad.load_spec(rd.EXAMPLES / f"{NAME}.yaml")
    split = load_split()
    ours = [train_symgrad(model, split, epochs=epochs, seed=s) for s in range(seeds)]
    theirs = [
        train_torch(model, spec, split, epochs=epochs, seed=s) for s in range(seeds)
    ]
    dw, steps, same = lockstep(model, spec, split, epochs=lockstep_epochs)
    data = f"Breast cancer ({len(split.X_train)}/{len(split.X_test)})"
    head = f"| {data} | {architecture(spec)} | {epochs}, {BATCH_SIZE} "
    lines = [
        "| data (train/test) | spec | epochs, batch | metric (test) | symgrad "
        f"| PyTorch {torch.__version__.split('+')[0]} | symgrad − PyTorch "
        "| lockstep max \\|Δw\\| |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for metric, key in (("accuracy ↑", "accuracy"), ("loss ↓", "loss")):
        a = [getattr(s, key) for s in ours]
        b = [getattr(s, key) for s in theirs]
        cell = f"{dw:.0e} ({steps} steps)" if key == "accuracy" else ""
        lines.append(
            f"{head}| {metric} | {_mean_sd(a)} | {_mean_sd(b)} | {_difference(a, b)} "
            f"| {cell} |"
        )
    text = "\n".join(lines)
    seconds = (
        np.mean([s.seconds for s in ours]),
        np.mean([s.seconds for s in theirs]),
    )
    return text + (
        f"\n\nseeds 0–{seeds - 1}; training time per run: symgrad {seconds[0]:.2f} s, "
        f"PyTorch {seconds[1]:.2f} s (one thread); lockstep: seed 0, {lockstep_epochs} "
        f"epoch{'' if lockstep_epochs == 1 else 's'}, the same masks, {same:.0%} of test "
        "predictions equal"
    )


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"default {EPOCHS}")
    p.add_argument(
        "--lockstep-epochs",
        type=int,
        default=LOCKSTEP_EPOCHS,
        help=f"epochs of the lockstep run (default {LOCKSTEP_EPOCHS})",
    )
    p.add_argument(
        "--quick", action="store_true", help="2 seeds, 3 epochs, 1 lockstep epoch"
    )
    args = p.parse_args(argv)
    if not rd.have("torch"):
        raise SystemExit(INSTALL_HINT)
    import torch

    torch.set_num_threads(1)  # small matrices; and the machine is shared
    if args.quick:
        text = table(seeds=2, epochs=3, lockstep_epochs=1)
    else:
        text = table(
            seeds=args.seeds, epochs=args.epochs, lockstep_epochs=args.lockstep_epochs
        )
    print(text)
    return text


if __name__ == "__main__":
    main()
