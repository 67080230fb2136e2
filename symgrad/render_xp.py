"""Rendering the array-API module: a Derivation -> the source of `<name>_xp.py`.

The same layout as the NumPy module (render.py): the constants and the functions printed
from the plan (printers/xp_module.py), laid out by templates/module_xp.py.jinja, then
the runtime, symgrad/runtime_xp.py from the end of its configuration block on, copied in
as it is. The source is formatted with black in process and compiled before anything
is written; symgrad.generate writes it atomically (symgrad.files).
"""

from __future__ import annotations

import functools
import math
import os
import textwrap
from fractions import Fraction
from pathlib import Path

import black
import sympy as sp

from .derive import Derivation
from .plan import Plan, build
from .printers import number_text
from .printers.xp_module import derived
from .render import (
    CONFIG_END,
    DOC_WIDTH,
    ERF_DEPTH,
    ERF_TERMS,
    _comment,
    _init_note,
    _target_note,
    _version,
    _wrap,
    _wrap_equations,
    docstring_text,
    environment,
    output_path,
    regenerate_command,
)

RUNTIME_XP = Path(__file__).resolve().parent / "runtime_xp.py"
TARGET = "array-api"  # the value of --target, and of generate(target=)
SUFFIX = "_xp"  # <name>_xp.py


def context(
    d: Derivation, out_dir: str | os.PathLike[str] | None = None
) -> dict[str, object]:
    """Everything module_xp.py.jinja needs: the constants, the printed functions."""
    spec = d.spec
    plan = build(d)
    printed = derived(plan)
    opt = spec.optimizer
    loss_name = spec.loss.name
    out_act = d.out.activation
    targets = {
        "binary_crossentropy": "unit_interval",
        "categorical_crossentropy": "simplex",
    }.get(loss_name, "real")
    trainable = plan.trainable
    buffers = [p for p in plan.params if not p.trainable]
    noise = {
        s.target.name: plan.shapes[s.target][-1]
        for s in plan.forward
        if s.when == "dropout"
    }
    return {
        "name": spec.name,
        "version": _version(),
        "source": docstring_text(Path(spec.source).name),
        "regenerate": regenerate_xp(spec.source, out_dir),
        "network_line": _wrap(
            " → ".join([str(spec.input)] + [r.title for r in d.layers])
        ),
        "loss_line": _wrap(
            f"{d.output.loss_title}, summed over outputs, mean over the batch"
            + (f", plus {spec.l2:g}/2 · Σ‖W‖²" if spec.l2 else "")
        ),
        "optimizer_line": _wrap(
            opt.name + " (" + ", ".join(f"{k}={v}" for k, v in opt.params) + ")"
        ),
        "equations": _wrap_equations([s.equation for s in plan.backward if s.equation]),
        "notes": _notes(plan, bool(buffers), bool(noise)),
        "sizes": repr(tuple(spec.sizes)),
        "loss_name": loss_name,
        "optimizer_repr": repr(dict([("name", opt.name), *opt.params])),
        "l2_text": number_text(sp.Float(spec.l2)) if spec.l2 else "0.0",
        "param_names": repr(tuple(p.name for p in trainable)),
        "param_shapes": repr({p.name: p.shape for p in trainable}),
        "buffer_names": repr(tuple(p.name for p in buffers)),
        "buffer_shapes": repr({p.name: p.shape for p in buffers}),
        "init": [(p.name, repr(p.init), _init_note(d, p)) for p in plan.params],
        "task": d.task,
        "task_note": {
            "classes": "predict: the class index of each example (argmax of Ŷ)",
            "binary": "predict: 0/1 per output (Ŷ ≥ 0.5)",
            "values": "predict: Ŷ itself",
        }[d.task],
        "targets": targets,
        "target_note": _comment(
            "Y: " + _target_note(loss_name, spec.loss.custom, out_act.vector)
        ),
        "labels": repr(out_act.vector),
        "moments": repr(tuple(s.key for s in plan.update.state)),
        "dropout": repr(bool(noise)),
        "noise": repr(noise),
        "min_batch": 2 if buffers else 1,
        "helpers": sorted(printed.helpers),
        "erf_source": _erf_source() if "_erf" in printed.helpers else "",
        "derived": printed.source,
        "runtime": runtime_code(),
    }


def _notes(plan: Plan, buffers: bool, dropout: bool) -> list[str]:
    """The docstring's paragraphs on what the module is and how it computes."""
    notes = [
        "The derived math of the NumPy module symgrad writes from the same spec, "
        "against the Python array API standard (2023.12): it runs on the arrays it is "
        "given (NumPy, array-api-strict, PyTorch on CPU or CUDA, CuPy, JAX, also "
        "inside jax.jit, Dask, also on a cluster) and imports no array library: the "
        "namespace comes from the inputs. Everything is functional: forward, loss, "
        "loss_and_grad, predict, update, train_step and fit return new arrays and "
        "change none of their inputs; loss and loss_and_grad return the loss as a "
        "0-d array of the inputs' library.",
        "Printed from the same plan as the NumPy module's loss_and_grad: one "
        "expression per statement; a constant operand of a function is an array made "
        "like one of its arrays (zeros_like, full_like), so float32 stays float32 on "
        "every library; ReLU is maximum(Z, 0), so NaN propagates; the sigmoid and "
        "softplus are written from exp(-|z|) and logaddexp, finite everywhere.",
    ]
    if buffers:
        notes.append(
            "Training (loss_and_grad, train_step, fit, loss(training=True)) normalizes "
            "with the batch's statistics; inference (forward, predict, loss) with the "
            "running statistics in params, which train_step and fit return updated, "
            "as PyTorch keeps them."
        )
    if dropout:
        notes.append(
            "Dropout needs random numbers, and the standard has no generator: the "
            "caller passes them, as noise={name: uniform numbers in [0, 1) of shape "
            "(m, NOISE[name])} (made with any library's generator, e.g. "
            "jax.random.uniform inside jax.jit), or as rng=, a NumPy Generator that "
            "draws them on the host (draw_noise: the NumPy module's masks for the "
            "same generator). Without either, no dropout."
        )
    notes.append(
        "After _update comes symgrad's array-API runtime, the same in every such "
        "module (symgrad/runtime_xp.py, configured by the constants above): the "
        "namespace, the checks of params, X and Y (values only where they are at "
        "hand: not under jax.jit, not on Dask), init_params, forward, loss, "
        "loss_and_grad, predict, draw_noise, init_state, update, train_step and fit."
    )
    del plan
    return [textwrap.fill(n, DOC_WIDTH) for n in notes]


def _erf_source() -> str:
    series, c = [], Fraction(1)
    for n in range(ERF_TERMS):  # c_n = 2^n / (2n + 1)!!, exactly, then rounded once
        series.append(repr(float(c)))
        c = c * 2 / (2 * n + 3)
    template = environment().get_template("erf_xp.py.jinja")
    return template.render(
        erf_series=series,
        erf_depth=ERF_DEPTH,
        two_over_sqrt_pi=repr(2 / math.sqrt(math.pi)),
        sqrt_pi=repr(math.sqrt(math.pi)),
    ).strip()


def regenerate_xp(source: str, out_dir: str | os.PathLike[str] | None = None) -> str:
    """The command that writes the array-API module again, for its docstring."""
    if source.startswith("<") and source.endswith(">"):
        return (
            f'symgrad.generate(spec, target="{TARGET}") with the same spec\n    (given '
            f"as {source}, not a file)"
        )
    command = f"{regenerate_command(source, out_dir)} --target {TARGET}"
    if len("Regenerate with: " + command) > DOC_WIDTH:  # on a line of its own
        return "\n    " + command
    return command


@functools.cache
def runtime_code() -> str:
    """symgrad/runtime_xp.py after its configuration block."""
    text = RUNTIME_XP.read_text(encoding="utf-8")
    _, found, code = text.partition(CONFIG_END)
    if not found:
        raise RuntimeError(
            f"symgrad bug: {RUNTIME_XP} has no line {CONFIG_END.strip()!r}"
        )
    return code.strip("\n")


def render(d: Derivation, out_dir: str | os.PathLike[str] | None = None) -> str:
    """The formatted source of the array-API module.

    Raises:
        RuntimeError: the template produced code that black or compile() rejects; that
            is a bug in symgrad, and nothing has been written.
    """
    template = environment().get_template("module_xp.py.jinja")
    source = template.render(**context(d, out_dir))
    try:
        formatted = black.format_str(source, mode=black.Mode())
        compile(formatted, f"{d.spec.name}{SUFFIX}.py", "exec", dont_inherit=True)
    except (black.InvalidInput, SyntaxError, ValueError) as exc:
        raise RuntimeError(
            f"symgrad bug: the array-API module generated for {d.spec.name!r} does not "
            f"compile ({exc}); nothing was written. Please report it with the spec."
        ) from exc
    return formatted


def xp_output_path(name: str, out_dir: str | os.PathLike[str] | None) -> Path:
    """Where `<name>_xp.py` goes."""
    return output_path(f"{name}{SUFFIX}", out_dir)
