"""Gradient check: does a generated module's `loss_and_grad` agree with finite differences?

`check_gradients(spec)` generates the module into a temporary directory, imports it, and
compares each parameter's gradient with central differences of the module's own `loss`,
on seeded random inputs and targets that suit the loss and the task (`target_kind`:
one-hot rows for targets on the simplex or a classifier, 0/1 labels for targets in [0, 1]
or a binary task, normal values otherwise). It is what to run after writing a custom
activation or loss: the derivation is SymPy's, but the check is independent of it.

The error of an entry is |g − fd| / max(|g|, |fd|, FLOOR): relative for gradients of
ordinary size, absolute below FLOOR, where a central difference's rounding noise
(~1e-11 at h = 1e-5) would otherwise look like a large relative error.

A central difference is no derivative where x ± h straddles a kink of the loss (a
ReLU's pre-activation within h of 0, two entries of a max-pooling window within h of
each other, |z| at 0): there the one-sided slopes (L(x+h) − L(x))/h and (L(x) −
L(x−h))/h differ by a jump J, and the central difference misses the slope at x by up
to J/2. An entry whose error is within J (what a kink explains; a smooth loss has J ≈
|L''|·h, far below a wrong gradient's error) is checked again with h/KINK_SHRINK, which
moves the difference off a kink farther than that from x; one still straddling a kink
then is left out. The table says how many entries of each parameter were checked
with the smaller step and how many were left out.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from . import layer_registry
from .derive import Derivation, derive
from .errors import SymgradError
from .files import output_path, write_text
from .render import render
from .spec import Spec, SpecSource, as_spec

STEP = 1e-5  # central difference step: balances truncation (h²) and rounding (ε/h)
FLOOR = 1e-4  # below this, gradients are compared absolutely
TOLERANCE = 1e-5
EXAMPLES = 8
MAX_ENTRIES = 50  # entries checked per parameter (a seeded sample of larger ones)
MAX_MEMORY = 2**31  # bytes the check may allocate (an estimate, made before allocating)
KINK_SHRINK = 10  # the step of an entry whose difference straddles a kink: h / this


@dataclass(frozen=True)
class ParamCheck:
    """The comparison for one parameter."""

    name: str
    shape: tuple[int, ...]
    checked: int
    max_abs_error: float
    max_rel_error: float
    near_kink: int = 0  # entries whose difference straddled a kink: checked with h/10
    excluded: int = 0  # of those, still straddling one with the smaller step: left out


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a gradient check; `ok` when every error is within tolerance."""

    name: str
    examples: int
    seed: int
    step: float
    tolerance: float
    targets: str
    loss: float
    params: tuple[ParamCheck, ...]

    def failed(self, p: ParamCheck) -> bool:
        return not p.max_rel_error <= self.tolerance  # NaN fails

    @property
    def ok(self) -> bool:
        return math.isfinite(self.loss) and not any(self.failed(p) for p in self.params)

    @property
    def max_rel_error(self) -> float:
        return max((p.max_rel_error for p in self.params), default=0.0)

    def table(self) -> str:
        """The per-parameter table and a verdict line, as `symgrad check` prints them."""
        head = (
            f"symgrad check: {self.name}: loss_and_grad against central differences "
            f"(h = {self.step:g})\n{self.examples} random examples (seed {self.seed}, "
            f"{self.targets} targets), loss {self.loss:.6g}"
        )
        rows = [("parameter", "shape", "checked", "max abs error", "max rel error", "")]
        for p in self.params:
            rows.append(
                (
                    p.name,
                    str(p.shape),
                    str(p.checked),
                    f"{p.max_abs_error:.2e}",
                    f"{p.max_rel_error:.2e}",
                    "MISMATCH" if self.failed(p) else "ok",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [head, ""]
        for r in rows:
            cells = [
                c.ljust(w) if i < 2 or i == 5 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
        lines.append("")
        for p in self.params:
            if p.near_kink:
                small = self.step / KINK_SHRINK
                left = (
                    f"; {p.excluded} still within {small:g} of one, left out"
                    if p.excluded
                    else ""
                )
                lines.append(
                    f"note: {p.name}: {p.near_kink} of its entries lie within h of a "
                    "kink of the loss (a ReLU or a max changing sides: the one-sided "
                    f"differences disagree), checked with h = {small:g}{left}"
                )
        if any(p.near_kink for p in self.params):
            lines.append("")
        if not math.isfinite(self.loss):
            lines.append(
                "MISMATCH: the loss is not finite on the random data "
                "(does the loss accept these targets?)"
            )
        elif self.ok:
            lines.append(
                f"ok: all {len(self.params)} gradients match finite differences "
                f"(max relative error {self.max_rel_error:.1e} ≤ {self.tolerance:g})"
            )
        else:
            bad = ", ".join(p.name for p in self.params if self.failed(p))
            lines.append(
                f"MISMATCH: {bad} differ from finite differences "
                f"(max relative error {self.max_rel_error:.2g} > {self.tolerance:g})"
            )
        return "\n".join(lines)


def target_kind(d: Derivation) -> str:
    """Which random targets suit the loss and the task: 'one-hot', '0/1' or 'normal'.

    What the loss needs (d.targets) comes first, then what the output means (d.task):
    a classifier's targets are one-hot rows or 0/1 labels even where its loss would
    take real numbers."""
    if d.targets == "simplex" or d.task == "classes":
        return "one-hot"
    if d.targets == "unit_interval" or d.task == "binary":
        return "0/1"
    return "normal"


def random_batch(
    n_in: int, n_out: int, m: int, kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    X = rng.standard_normal((m, n_in))
    if kind == "one-hot":
        Y = np.eye(n_out)[rng.integers(0, n_out, m)]
    elif kind == "0/1":
        Y = rng.integers(0, 2, (m, n_out)).astype(np.float64)
    else:
        Y = rng.standard_normal((m, n_out))
    return X, Y


def compare_module(
    module: Any,  # noqa: ANN401 - a generated module (or a stand-in with its API)
    *,
    targets: str = "normal",
    examples: int = EXAMPLES,
    seed: int = 0,
    step: float = STEP,
    tolerance: float = TOLERANCE,
    max_entries: int = MAX_ENTRIES,
) -> CheckResult:
    """Compare a module's loss_and_grad with central differences of its loss.

    Args:
        module: anything with the generated module's NAME, LAYER_SIZES, init_params,
            loss and loss_and_grad.
        targets: "one-hot", "0/1" or "normal" (see `target_kind`).
        examples: batch size of the random data.
        seed: seeds the parameters, the data and the sampled entries.
        step: the finite-difference step h.
        tolerance: the largest acceptable error (see the module docstring).
        max_entries: entries checked per parameter.

    Returns:
        The per-parameter errors; `.ok` tells whether they are all within tolerance.
    """
    rng = np.random.default_rng(seed)
    sizes = tuple(module.LAYER_SIZES)
    X, Y = random_batch(sizes[0], sizes[-1], examples, targets, rng)
    params = module.init_params(seed=seed, dtype=np.float64)
    names = tuple(getattr(module, "PARAM_NAMES", params))  # trainable: not buffers
    for key in names:
        if not key.startswith("W"):  # zero biases and unit gains would hide one that
            # is ignored (b, beta: zeros; gamma: ones)
            params[key] = params[key] + 0.1 * rng.standard_normal(params[key].shape)
    # v2: the gradient is the training loss's (batch statistics, dropout with the
    # masks of a generator): differentiate that, with the same masks every time;
    # the running statistics (BUFFER_NAMES) are in params but have no gradient
    dropout = bool(getattr(module, "DROPOUT", False))
    training = dropout or bool(getattr(module, "BUFFER_NAMES", ()))

    def masks() -> dict[str, Any]:
        return {"rng": np.random.default_rng(seed)} if dropout else {}

    def training_loss() -> float:
        if not training:
            return module.loss(params, X, Y)
        return module.loss(params, X, Y, training=True, **masks())

    loss, grads = module.loss_and_grad(params, X, Y, **masks())
    base = training_loss()

    def difference(value: np.ndarray, idx: tuple, h: float) -> tuple[float, float]:
        """The central difference at entry idx with step h, and the jump J of the
        one-sided slopes there: |L(x+h) + L(x−h) − 2 L(x)| / h."""
        original = value[idx]
        value[idx] = original + h
        up = training_loss()
        value[idx] = original - h
        down = training_loss()
        value[idx] = original
        return (up - down) / (2 * h), abs(up + down - 2 * base) / h

    def astride(g: float, fd: float, jump: float) -> bool:
        """The error is out of tolerance and a kink between x − h and x + h explains
        it (it is within the jump of the one-sided slopes)."""
        return tolerance * max(abs(g), abs(fd), FLOOR) < abs(g - fd) <= jump

    rows = []
    for key in names:
        value = params[key]
        grad = np.asarray(grads[key], dtype=np.float64)
        entries = list(itertools.product(*(range(s) for s in value.shape)))
        if len(entries) > max_entries:
            picks = rng.choice(len(entries), max_entries, replace=False)
            entries = [entries[i] for i in sorted(picks)]
        abs_err, rel_err = 0.0, 0.0
        near_kink = excluded = 0
        for idx in entries:
            g = float(grad[idx]) if grad.shape == value.shape else float("nan")
            fd, jump = difference(value, idx, step)
            if astride(g, fd, jump):
                near_kink += 1  # a kink explains the error: a smaller step
                fd, jump = difference(value, idx, step / KINK_SHRINK)
                if astride(g, fd, jump):
                    excluded += 1  # still astride a kink: no derivative to compare
                    continue
            err = abs(g - fd)
            if not np.isfinite(err):
                abs_err = rel_err = float("nan")
                break
            abs_err = max(abs_err, err)
            rel_err = max(rel_err, err / max(abs(g), abs(fd), FLOOR))
        rows.append(
            ParamCheck(
                key,
                value.shape,
                len(entries) - excluded,
                abs_err,
                rel_err,
                near_kink,
                excluded,
            )
        )
    return CheckResult(
        str(module.NAME),
        examples,
        seed,
        step,
        tolerance,
        targets,
        float(loss),
        tuple(rows),
    )


def import_path(path: Path, name: str) -> ModuleType:
    """Import a generated module from a file, without touching sys.modules."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parameters(spec: Spec) -> int:
    """An upper bound of the numbers a network keeps, as each layer's kind counts them
    (a dense layer (n + 1)·k, a norm 4n at most, dropout none)."""
    shapes = spec.shapes
    return sum(
        layer_registry.of(layer).parameters(layer, shapes[i])
        for i, layer in enumerate(spec.layers)
    )


def memory_estimate(spec: Spec, examples: int) -> int:
    """Bytes a check allocates, roughly: float64 parameters, gradients and the random
    parameters' temporaries (3 per parameter), and per example the inputs, the
    pre-activations, activations and deltas of every layer (4 per unit)."""
    return 8 * (3 * _parameters(spec) + 4 * examples * sum(spec.sizes))


def _bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


def check_gradients(
    spec: SpecSource,
    *,
    examples: int = EXAMPLES,
    seed: int = 0,
    tolerance: float = TOLERANCE,
) -> CheckResult:
    """Generate the spec's module in a temporary directory and check its gradients.

    Args:
        spec: a Spec, a spec file, YAML text or a dict (see `symgrad.as_spec`).
        examples: batch size of the random data.
        seed: seeds the parameters, the data and the sampled entries.
        tolerance: the largest acceptable error.
    """
    loaded = as_spec(spec)
    need = memory_estimate(loaded, examples)
    if need > MAX_MEMORY:
        raise SymgradError(
            f"checking {loaded.name} on {examples} examples needs about "
            f"{_bytes(need)} of memory ({_parameters(loaded):,} parameters); "
            f"symgrad check allocates at most {_bytes(MAX_MEMORY)} (check a narrower "
            "copy of the spec: the derivation does not depend on the widths)"
        )
    d = derive(loaded)
    with tempfile.TemporaryDirectory(prefix="symgrad-check-") as tmp:
        path = output_path(loaded.name, tmp)
        write_text(path, render(d))
        module = import_path(path, f"_symgrad_check_{loaded.name}")
    return compare_module(
        module,
        targets=target_kind(d),
        examples=examples,
        seed=seed,
        tolerance=tolerance,
    )
