"""Rendering: a Derivation -> the source of a standalone NumPy module, formatted and written.

A module is its derived part followed by the runtime. Python builds the template context
of the derived part (the constants, every name, every printed expression, every comment);
the Jinja2 templates in templates/ only lay it out. The runtime is symgrad/runtime.py
from the end of its configuration block on, copied in as it is: the same in every module,
configured by the printed constants. The source is formatted with black in process and
written atomically: a temporary file in the target directory, then a rename, so a failed
run leaves any existing file untouched (symgrad.files).
"""

from __future__ import annotations

import functools
import os
import shlex
import textwrap
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path

import black
import jinja2
import sympy as sp

from . import naming as nm
from . import ops
from .derive import Derivation
from .errors import SymgradError
from .ops import a, y, z
from .printers import DTYPE, NumPyCode, code, inplace, number_text, text

COMMENT_WIDTH = 80
DOC_WIDTH = 84  # the module docstring's paragraphs
DEFAULT_OUT_DIR = "generated"  # of `symgrad generate` and symgrad.generate
RUNTIME = Path(__file__).resolve().parent / "runtime.py"
CONFIG_END = "# --- end of configuration ---\n"  # the runtime is what follows this line
MOMENTS = {"sgd": (), "momentum": ("velocity",), "adam": ("m", "v")}  # state per param


def _template_dir() -> Path:
    """templates/ in a source checkout; the symgrad.templates package when installed."""
    here = Path(__file__).resolve().parent.parent / "templates"
    if (here / "module.py.jinja").is_file():
        return here
    return Path(str(resources.files("symgrad.templates")))


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_template_dir())),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


@dataclass(frozen=True)
class LayerCtx:
    l: int  # noqa: E741 - the layer index, as in the math
    W: str  # noqa: N815
    b: str
    Z: str  # noqa: N815
    A: str  # noqa: N815
    inp: str
    fan_in: int
    units: int
    forward: str
    title: str
    init: str


@dataclass(frozen=True)
class OutputCtx:
    Z: str  # noqa: N815
    A: str  # noqa: N815
    LS: str  # noqa: N815
    loss_code: str
    uses_log_softmax: bool
    loss_uses_a: bool  # the loss needs the output activation (not only Z)


@dataclass(frozen=True)
class Line:
    code: str
    comment: str = ""


def _init_for(spec_init: str, act_name: str) -> str:
    if spec_init != "auto":
        return spec_init
    return "he_normal" if act_name in ops.RELU_FAMILY else "glorot_uniform"


def _comment_lines(comment: str, code_line: str) -> list[Line]:
    """A comment wrapped above its code line."""
    wrapped = textwrap.wrap(comment, COMMENT_WIDTH, subsequent_indent="  ")
    return [Line(f"# {w}") for w in wrapped] + [Line(code_line)]


def context(
    d: Derivation, out_dir: str | os.PathLike[str] | None = None
) -> dict[str, object]:
    """Everything the module template needs, printed and named."""
    spec = d.spec
    fwd_printer, bwd_printer = NumPyCode(), NumPyCode()
    out_rule = d.output
    out_act = d.layers[-1].activation

    layers = []
    for rule in d.layers:
        l = rule.index  # noqa: E741
        act = rule.activation
        names = {z: nm.Z(l)}
        if act.vector:
            fwd_printer.helpers.add("_softmax")
            forward = f"_softmax({nm.Z(l)})"
        else:
            forward = code(act.forward, names, fwd_printer)
        init = _init_for(spec.init, act.name)
        layers.append(
            LayerCtx(
                l,
                nm.W(l),
                nm.b(l),
                nm.Z(l),
                nm.A(l),
                nm.A(l - 1),
                rule.fan_in,
                rule.units,
                forward,
                act.title,
                init,
            )
        )
    # an identity layer's output is its pre-activation
    layers = [
        lc if lc.forward != lc.Z else LayerCtx(**{**lc.__dict__, "A": lc.Z})
        for lc in layers
    ]
    layers = [
        LayerCtx(**{**lc.__dict__, "inp": layers[i - 1].A}) if i else lc
        for i, lc in enumerate(layers)
    ]
    last = layers[-1]
    out_names = {z: last.Z, a: last.A, y: nm.TARGET}
    loss_expr = out_rule.forward.xreplace(
        {sp.Symbol("ls", real=True): sp.Symbol(nm.LOG_SOFTMAX, real=True)}
    )
    loss_code = code(loss_expr, out_names, fwd_printer)
    if nm.LOG_SOFTMAX in loss_code:
        fwd_printer.helpers.add("_log_softmax")
    out = OutputCtx(
        last.Z,
        last.A,
        nm.LOG_SOFTMAX,
        loss_code,
        nm.LOG_SOFTMAX in loss_code,
        loss_expr.has(a) or last.A == last.Z,
    )

    backward, equations = _backward(d, layers, bwd_printer)
    opt = spec.optimizer
    optimizer = {
        "name": opt.name,
        **{
            {"learning_rate": "lr"}.get(k, k): (
                v if isinstance(v, bool) else number_text(sp.Float(v))
            )
            for k, v in opt.params
        },
    }
    step_printer = NumPyCode()
    step = inplace.step_code(
        d,
        _equation_comments(backward),
        step_printer,
        scale=f"{optimizer['lr']} / m" if opt.name == "sgd" else "1 / m",
        l2=spec.l2 > 0,
        l2_in_grads=spec.l2 > 0 and opt.name != "sgd",
    )
    helpers = fwd_printer.helpers | bwd_printer.helpers | step_printer.helpers
    params_names = tuple(k for lc in layers for k in (lc.W, lc.b))
    loss_name = spec.loss.name
    # what the runtime's _targets checks beyond shape and NaN/inf: the targets a loss's
    # derivation assumes (cross-entropy), or nothing (the other losses, custom ones
    # included: a custom loss never has a built-in name, take any real target)
    targets = {
        "binary_crossentropy": "unit_interval",
        "categorical_crossentropy": "simplex",
    }.get(loss_name, "real")
    return {
        "name": spec.name,
        "version": _version(),
        "source": docstring_text(Path(spec.source).name),
        "regenerate": regenerate_command(spec.source, out_dir),
        "network_line": _wrap(
            " → ".join(
                [str(spec.input)]
                + [f"{r.units} ({r.activation.title})" for r in d.layers]
            )
        ),
        "loss_line": _wrap(
            f"{out_rule.loss_title}, summed over outputs, mean over the batch"
            + (f", plus {spec.l2:g}/2 · Σ‖W‖²" if spec.l2 else "")
        ),
        "optimizer_line": _wrap(
            opt.name + " (" + ", ".join(f"{k}={v}" for k, v in opt.params) + ")"
        ),
        "equations": equations,
        "notes": _notes(step),
        "sizes": repr(tuple(spec.sizes)),
        "n_in": spec.input,
        "n_out": spec.sizes[-1],
        "loss_name": loss_name,
        "optimizer_repr": repr(dict([("name", opt.name), *opt.params])),
        "l2": spec.l2 > 0,
        "l2_text": number_text(sp.Float(spec.l2)) if spec.l2 else "0.0",
        "l2_sum": " + ".join(f"np.sum({lc.W} * {lc.W})" for lc in layers),
        "param_names": repr(params_names),
        "param_shapes": repr(
            {
                k: (lc.fan_in, lc.units) if k == lc.W else (lc.units,)
                for lc in layers
                for k in (lc.W, lc.b)
            }
        ),
        "buffer_names": "()",
        "buffer_shapes": "{}",
        "init": [
            entry
            for lc in layers
            for entry in (
                (
                    lc.W,
                    repr((lc.init, lc.fan_in, lc.units)),
                    f"layer {lc.l}: {lc.title}",
                ),
                (lc.b, repr(("zeros",)), ""),
            )
        ],
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
        "moments": repr(MOMENTS[opt.name]),
        "dropout": "False",
        "step": step,
        "params_tuple": ", ".join(params_names),
        "param_names_list": list(params_names),
        "helpers": sorted(helpers),
        "erf_source": _erf_source() if "_erf" in helpers else "",
        "layers": layers,
        "out": out,
        "keep_dt_forward": DTYPE in fwd_printer.helpers,
        "keep_dt_backward": DTYPE in helpers,
        "backward": backward,
        "grads_dict": "{" + ", ".join(f'"{k}": d{k}' for k in params_names) + "}",
        "optimizer": optimizer,
        "runtime": runtime_code(),
    }


def _notes(step: inplace.StepCode) -> list[str]:
    """The docstring's paragraphs on how the module computes: once, not per line."""
    how = (
        "step computes the numbers of loss_and_grad and the update with in-place NumPy "
        "calls, in work arrays made once per batch size (_make_work): bias gradients "
        "Σₙ δ as the product 1ᵀδ, faster than a sum"
    )
    if any(name == "exp_max" for name, _ in step.work):
        how += (
            "; the sigmoid as 1 / (1 + e^-x) with -x capped at log(largest float), "
            "so that e^-x stays finite"
        )
    runtime = (
        "After _step comes symgrad's runtime, the same in every module "
        "(symgrad/runtime.py, configured by the constants above): the checks of "
        "params, X and Y, init_params, forward, loss, loss_and_grad, predict, "
        "save_params, load_params, init_state, step and fit."
    )
    return [textwrap.fill(how + ".", DOC_WIDTH), textwrap.fill(runtime, DOC_WIDTH)]


def _comment(text: str) -> str:
    """text as comment lines, wrapped."""
    return "\n".join(
        "# " + line
        for line in textwrap.wrap(text, COMMENT_WIDTH, break_on_hyphens=False)
    )


def _target_note(loss_name: str, custom: bool, labels: bool) -> str:
    """The targets a generated module's loss takes, for the docstring of _targets."""
    if custom:
        note = "real targets, as the custom loss takes them (checked for NaN/inf only)"
    elif loss_name == "binary_crossentropy":
        note = "targets in [0, 1]: 0/1 labels or probabilities"
    elif loss_name == "categorical_crossentropy":
        note = "rows on the simplex (entries >= 0, summing to 1)"
    else:
        note = "real targets"
    return note + (", or integer class labels of shape (m,)" if labels else "")


def _equation_comments(backward: list[Line]) -> dict[str, list[str]]:
    """The comment lines above each backward line, by the name the line assigns."""
    comments: dict[str, list[str]] = {}
    pending: list[str] = []
    for line in backward:
        if line.code.startswith("#"):
            pending.append(line.code)
            continue
        if line.comment:
            pending.append(f"# {line.comment}")
        comments[line.code.split(" = ")[0]] = pending
        pending = []
    return comments


def _backward(
    d: Derivation, layers: list[LayerCtx], printer: NumPyCode
) -> tuple[list[Line], list[str]]:
    """The backward pass as code lines with their equations, and the docstring summary."""
    out = d.output
    n = d.depth
    last = layers[-1]
    act = d.layers[-1].activation
    names = {z: last.Z, a: last.A, y: nm.TARGET}
    lines: list[Line] = []
    eqs: list[str] = []
    loss_title = out.loss_title.split(" (")[0]
    if out.jvp:
        h = code(out.delta, names, printer)
        lines += _comment_lines(
            f"h = ŷ ⊙ ∂ℓ/∂ŷ = {text(out.delta, {a: 'ŷ'})}; softmax's Jacobian gives"
            f" δ{n} = h − ŷ ⊙ Σₖ hₖ",
            f"H = {h}",
        )
        lines.append(Line(f"D{n} = (H - {last.A} * H.sum(axis=1, keepdims=True)) / m"))
        eqs.append(
            f"δ{n} = (h − Ŷ ⊙ Σₖ hₖ) / m,  h = Ŷ ⊙ ∂ℓ/∂Ŷ = {text(out.delta, {a: 'Ŷ', y: 'Y'})}"
        )
    else:
        delta = code(out.delta, names, printer)
        shown = text(out.delta, {a: "ŷ"})
        why = (
            f"{loss_title} on {act.title}: SymPy simplified ∂ℓ/∂ŷ · ∂ŷ/∂z to {shown}"
            if out.collapsed
            else f"{loss_title} on {act.title}: ∂ℓ/∂ŷ · ∂ŷ/∂z = {shown}"
        )
        lines += _comment_lines(
            f"δ{n} = ∂L/∂Z{n} = ({shown}) / m; {why}", f"D{n} = ({delta}) / m"
        )
        eqs.append(
            f"δ{n} = ({text(out.delta, {a: 'Ŷ', y: 'Y'})}) / m"
            + ("   (collapsed)" if out.collapsed else "")
        )
    l2 = d.spec.l2 > 0
    for lc in reversed(layers):
        l = lc.l  # noqa: E741
        reg = f" + L2 * {lc.W}" if l2 else ""
        lines += _comment_lines(
            f"∂L/∂W{l} = {lc.inp}ᵀ δ{l}"
            + (f" + l2·W{l}" if l2 else "")
            + f";  ∂L/∂b{l} = Σₙ δ{l}",
            f"d{lc.W} = {lc.inp}.T @ D{l}{reg}",
        )
        lines.append(Line(f"d{lc.b} = D{l}.sum(axis=0)"))
        eqs.append(
            f"∂L/∂W{l} = {lc.inp}ᵀ δ{l}"
            + (f" + l2·W{l}" if l2 else "")
            + f",   ∂L/∂b{l} = Σₙ δ{l}"
        )
        if l == 1:
            break
        below = layers[l - 2]
        below_act = d.layers[l - 2].activation
        fprime = below_act.df
        rule_text = f"{below_act.name}'(z) = {text(fprime)}"
        if fprime == 1:
            lines += _comment_lines(
                f"δ{l - 1} = δ{l} W{l}ᵀ  ({rule_text})", f"D{l - 1} = D{l} @ {lc.W}.T"
            )
            eqs.append(f"δ{l - 1} = δ{l} W{l}ᵀ")
        else:
            fp = code(fprime, {a: below.A, z: below.Z}, printer)
            lines += _comment_lines(
                f"δ{l - 1} = (δ{l} W{l}ᵀ) ⊙ f'(Z{l - 1}),  {rule_text}",
                f"D{l - 1} = (D{l} @ {lc.W}.T) * {_parenthesized(fp)}",
            )
            eqs.append(f"δ{l - 1} = (δ{l} W{l}ᵀ) ⊙ f'(Z{l - 1}),   {rule_text}")
    return lines, _wrap_equations(eqs)


def _parenthesized(code: str) -> str:
    """code in parentheses, unless one pair already encloses all of it."""
    depth = 0
    for i, ch in enumerate(code):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and i < len(code) - 1:
            return f"({code})"
    return code if code.startswith("(") else f"({code})"


def _wrap(line: str) -> str:
    """A docstring line wrapped to the comment width, continuation lines indented."""
    return "\n    ".join(
        textwrap.wrap(line, COMMENT_WIDTH - 12, break_on_hyphens=False)
    )


def _wrap_equations(eqs: list[str]) -> list[str]:
    out: list[str] = []
    for eq in eqs:
        out += textwrap.wrap(eq, COMMENT_WIDTH - 4, subsequent_indent="    ")
    return out


def _version() -> str:
    from . import __version__

    return __version__


ERF_TERMS = 56  # Kummer series terms: the tail is below 1e-17 relative for |x| < 2.5
ERF_DEPTH = 32  # continued fraction: erfc(x ≥ 2.5) to 1e-13 relative, so erf to 1 ulp


def _erf_source() -> str:
    series, c = [], Fraction(1)
    for n in range(ERF_TERMS):  # c_n = 2^n / (2n + 1)!!, exactly, then rounded once
        series.append(repr(float(c)))
        c = c * 2 / (2 * n + 3)
    template = environment().get_template("erf.py.jinja")
    return template.render(erf_series=series, erf_depth=ERF_DEPTH).strip()


def docstring_text(text: str) -> str:
    """text as it may appear inside the module's triple-quoted docstring.

    Outside text (the spec's file name) must not end the docstring or be read as an
    escape: a quote, a backslash or a character that is not printable is written as
    ``<U+XXXX>``; everything else, non-ASCII letters included, stays as it is.
    """
    return "".join(
        c if c.isprintable() and c not in '"\\' else f"<U+{ord(c):04X}>" for c in text
    )


def regenerate_command(
    source: str, out_dir: str | os.PathLike[str] | None = None
) -> str:
    """The command that writes the module again, for its docstring.

    The spec's path as it was given (relative to the working directory when it was
    given as an absolute path inside it) and `-o DIR` when DIR is not the default, both
    quoted for a POSIX shell and escaped for the docstring: `generated/` stays the same
    on every machine. A spec not read from a file (YAML text, a dict) is named as such.
    """
    if source.startswith("<") and source.endswith(">"):
        return (
            f"symgrad.generate(spec) with the same spec (given as {source}, not a file)"
        )
    words = ["symgrad", "generate", _shown_path(source)]
    if out_dir is not None and Path(_shown_path(out_dir)) != Path(DEFAULT_OUT_DIR):
        words += ["-o", _shown_path(out_dir)]
    return docstring_text(" ".join(shlex.quote(word) for word in words))


def _shown_path(path: str | os.PathLike[str]) -> str:
    """path as given; an absolute one inside the working directory relative to it."""
    given = Path(path)
    if given.is_absolute():
        try:
            return str(given.relative_to(Path.cwd()))
        except ValueError:
            pass
    return os.fspath(path)


@functools.cache
def runtime_code() -> str:
    """symgrad/runtime.py after its configuration block: the runtime every module ends
    with."""
    text = RUNTIME.read_text(encoding="utf-8")
    _, found, code = text.partition(CONFIG_END)
    if not found:
        raise RuntimeError(f"symgrad bug: {RUNTIME} has no line {CONFIG_END.strip()!r}")
    return code.strip("\n")


def render(d: Derivation, out_dir: str | os.PathLike[str] | None = None) -> str:
    """The formatted source of the generated module.

    Args:
        d: the derivation.
        out_dir: the output directory as the user gave it, for the docstring's
            regenerate command (None: the default, generated).

    Raises:
        RuntimeError: the template produced code that black or compile() rejects; that
            is a bug in symgrad, and nothing has been written.
    """
    source = environment().get_template("module.py.jinja").render(**context(d, out_dir))
    try:
        formatted = black.format_str(source, mode=black.Mode())
        compile(formatted, f"{d.spec.name}.py", "exec", dont_inherit=True)
    except (black.InvalidInput, SyntaxError, ValueError) as exc:
        raise RuntimeError(
            f"symgrad bug: the module generated for {d.spec.name!r} does not compile "
            f"({exc}); nothing was written. Please report it with the spec."
        ) from exc
    return formatted


def output_path(name: str, out_dir: str | os.PathLike[str] | None) -> Path:
    directory = Path(out_dir) if out_dir is not None else Path("generated")
    if directory.exists() and not directory.is_dir():
        raise SymgradError(f"{directory}: output directory is a file")
    path = directory / f"{name}.py"
    if path.resolve().parent != directory.resolve():
        raise SymgradError(f"{name!r} would be written outside {directory}")
    return path
