"""Rendering: a Derivation -> the source of a standalone NumPy module, formatted and written.

A module is its derived part followed by the runtime. Python builds the template context
of the derived part (the constants, every name, every printed expression, every comment);
the Jinja2 templates in templates/ only lay it out. The runtime is
symgrad/runtime_shared.py (what the NumPy module and its array-API twin share) and then
symgrad/runtime.py, each from the end of its configuration block on, copied in as it is:
the same in every module, configured by the printed constants. The derived part is
formatted with black in process; the runtime, black-clean as the project's code is, is
appended as it is (black lays out each top-level statement on its own, so the result is
black's layout of the whole module: tests/test_fast_generate.py checks it for every
example, and black takes ~0.5 s on the runtime). The module is written atomically: a
temporary file in the target directory, then a rename, so a failed run leaves any
existing file untouched (symgrad.files).
"""

from __future__ import annotations

import functools
import os
import shlex
import textwrap
from pathlib import Path

import sympy as sp

from . import layout, optimizers
from .derive import Derivation
from .files import TARGETS
from .plan import Param, Plan, build
from .printers import learning_rate
from .printers.numpy_module import allocating, in_place
from .spec import OptimizerSpec
from .sym import special
from .sym.code import number_text
from .sym.special import environment
from .version import __version__

COMMENT_WIDTH = 80
DOC_WIDTH = 84  # the module docstring's paragraphs
LINE_LENGTH = 100  # the project's ruff limit (pyproject.toml)
DEFAULT_OUT_DIR = "generated"  # of `symgrad generate` and symgrad.generate
RUNTIME = Path(__file__).resolve().parent / "runtime.py"
RUNTIME_SHARED = (
    Path(__file__).resolve().parent / "runtime_shared.py"
)  # in both modules
CONFIG_END = "# --- end of configuration ---\n"  # the runtime is what follows this line


def constants(d: Derivation, plan: Plan) -> dict[str, object]:
    """The template values every module of a spec shares, NumPy or array API: the
    docstring's summary lines and the printed constants the runtimes read."""
    spec = d.spec
    opt = spec.optimizer
    loss_name = spec.loss.name
    out_act = d.out.activation
    trainable = plan.trainable
    buffers = [p for p in plan.params if not p.trainable]
    return {
        "name": spec.name,
        "version": _version(),
        "network_line": _wrap(
            " → ".join([str(spec.input)] + [r.title for r in d.layers])
        ),
        "loss_line": _wrap(
            f"{d.output.loss_title}, summed over outputs, mean over the batch"
            + (f", plus {spec.l2:g}/2 · Σ‖W‖²" if spec.l2 else "")
        ),
        "optimizer_line": _wrap(_optimizer_line(opt)),
        "equations": _wrap_equations([s.equation for s in plan.backward if s.equation]),
        "sizes": repr(tuple(spec.sizes)),
        "input_shape": repr(spec.input if isinstance(spec.input, tuple) else None),
        "loss_name": loss_name,
        "optimizer_repr": repr(_optimizer_dict(opt)),
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
        # what the runtime's _targets checks beyond shape and NaN/inf
        "targets": d.targets,
        "target_note": _comment(
            "Y: " + _target_note(d.targets, spec.loss.custom, out_act.vector)
        ),
        "labels": repr(out_act.vector),
        "moments": repr(tuple(s.key for s in plan.update.state)),
        "optimizer_states": repr(
            {
                name: tuple(s.key for s in entry.state)
                for name, entry in optimizers.OPTIMIZERS.items()
            }
        ),
        "min_batch": 2 if buffers else 1,
    }


def _optimizer_dict(opt: OptimizerSpec) -> dict[str, object]:
    """The optimizer as the module's OPTIMIZER constant: name, settings, then its
    schedule and clip_norm where the spec has them."""
    out: dict[str, object] = dict([("name", opt.name), *opt.params])
    if opt.schedule is not None:
        out["schedule"] = dict([("name", opt.schedule.name), *opt.schedule.params])
    if opt.clip_norm is not None:
        out["clip_norm"] = opt.clip_norm
    return out


def _optimizer_line(opt: OptimizerSpec) -> str:
    """`adam (learning_rate=0.001, ...), schedule cosine (t_max=100, ...), clip_norm 1`."""
    line = opt.name + " (" + ", ".join(f"{k}={v}" for k, v in opt.params) + ")"
    if opt.schedule is not None:
        settings = ", ".join(f"{k}={v:g}" for k, v in opt.schedule.params)
        line += f", schedule {opt.schedule.name} ({settings})"
    if opt.clip_norm is not None:
        line += f", gradients clipped to a global norm of {opt.clip_norm:g}"
    return line


def context(
    d: Derivation,
    out_dir: str | os.PathLike[str] | None = None,
    numba: bool = False,
) -> dict[str, object]:
    """Everything the module template needs, printed and named: the constants, and
    the derived functions printed from the plan (numba: the step's elementwise runs
    as numba kernels, printers/fused.py)."""
    spec = d.spec
    plan = build(d)
    derived, helpers = allocating(plan)
    step = in_place(plan, fused=numba)
    helpers = set(helpers) | step.helpers
    buffers = any(not p.trainable for p in plan.params)
    return {
        **constants(d, plan),
        "title": title(
            f"{spec.name}: a NumPy training module"
            + (" with numba kernels in its step" if numba else "")
            + f" generated by symgrad {_version()}",
            spec.source,
        ),
        "regenerate": regenerate_line(
            regenerate_words(spec.source, out_dir, "numba" if numba else None)
        ),
        "notes": _notes(buffers, plan),
        "dropout": repr(plan.dropout),
        "helpers": sorted(helpers),
        "erf_source": special.source(helpers),
        "derived": derived + "\n\n" + learning_rate.source(plan),
        "step": (step.kernels + "\n\n\n" if numba else "") + step.source,
        "numba": numba,
        "numba_missing": _numba_missing(d, out_dir) if numba else [],
    }


def _numba_missing(d: Derivation, out_dir: str | os.PathLike[str] | None) -> list[str]:
    """The numba module's ImportError after what Python found (No module named
    'numba'): why numba is needed and the fixes, the NumPy module's command among them;
    as string literals of one line each, which the template concatenates."""
    command = " ".join(regenerate_words(d.spec.source, out_dir))
    text = (
        f": {d.spec.name}{TARGETS['numba']}.py was generated with --target numba and"
        " its step runs numba kernels. Fix: pip install 'symgrad[numba]' (or pip"
        " install numba), or generate it without --target numba, as the module that"
        f" needs NumPy only: {command}"
    )
    pieces = textwrap.wrap(
        text,
        COMMENT_WIDTH - 8,
        drop_whitespace=False,
        break_long_words=False,
        break_on_hyphens=False,
    )
    assert "".join(pieces) == text, text
    return [repr(piece) for piece in pieces]


def title(what: str, source: str) -> str:
    """The docstring's first paragraph: what the module is, from which spec file."""
    return _fill(f"{what} from {docstring_text(Path(source).name)}.")


def _init_note(d: Derivation, p: Param) -> str:
    """What a parameter is, for INIT's comment: layer 1: ReLU."""
    if not p.weight:
        return ""
    rule = d.layer(p.layer)
    return f"layer {p.layer}: {rule.title}"


def _notes(buffers: bool, plan: Plan) -> list[str]:
    """The docstring's paragraphs on how the module computes: once, not per line."""
    how = (
        "step computes the numbers of loss_and_grad and the update with in-place NumPy "
        "calls, in work arrays made once per batch size (_make_work) and named by role "
        "(h: a layer's values, g: its gradients, r: row statistics, tmp: scratch); "
        "sums over the batch as products with ones, faster than a sum"
    )
    if plan.update.folded:
        how += "; the learning rate rides in δ, so the gradients are ready to subtract"
    notes = [textwrap.fill(how + ".", DOC_WIDTH)]
    if buffers:
        notes.append(
            textwrap.fill(
                "Training (loss_and_grad, step, fit, loss(training=True)) normalizes "
                "with the batch's statistics; inference (forward, predict, loss) with "
                "the running statistics, which step and fit update as PyTorch does.",
                DOC_WIDTH,
            )
        )
    runtime = (
        "After _step comes symgrad's runtime, the same in every module "
        "(symgrad/runtime_shared.py, shared with the array-API module, then "
        "symgrad/runtime.py; configured by the constants above): the checks of "
        "params, X and Y, init_params, forward, loss, loss_and_grad, predict, "
        "predict_proba, save_params, load_params, init_state, step and fit."
    )
    notes.append(textwrap.fill(runtime, DOC_WIDTH))
    return notes


def regenerate_line(words: list[str]) -> str:
    """The docstring's last paragraph: the command on one line when it fits, else a
    shell word a line, joined by backslash-newline (the shell's continuation; the
    docstring is a raw string), so that it still pastes into a shell as one command."""
    line = "Regenerate with: " + " ".join(words)
    if len(line) <= LINE_LENGTH or len(words) == 1:  # one line, or prose (no file)
        return line if len(line) <= LINE_LENGTH else _fill(line)
    return "Regenerate with:\n" + "\\\n ".join(words)


def _fill(text: str) -> str:
    """A docstring paragraph within the line length; a word longer than a line (a
    path) gets a line of its own, which the linters accept."""
    return textwrap.fill(
        text, DOC_WIDTH, break_long_words=False, break_on_hyphens=False
    )


def _comment(text: str) -> str:
    """text as comment lines, wrapped."""
    return "\n".join(
        "# " + line
        for line in textwrap.wrap(text, COMMENT_WIDTH, break_on_hyphens=False)
    )


def _target_note(targets: str, custom: bool, labels: bool) -> str:
    """The targets a generated module's loss takes (losses.TARGETS), for the docstring of
    _targets."""
    note = {
        "unit_interval": "targets in [0, 1]: 0/1 labels or probabilities",
        "simplex": "rows on the simplex (entries >= 0, summing to 1)",
        "real": (
            "real targets, as the custom loss takes them (checked for NaN/inf only)"
            if custom
            else "real targets"
        ),
    }[targets]
    return note + (", or integer class labels of shape (m,)" if labels else "")


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
    return __version__


def docstring_text(text: str) -> str:
    """text as it may appear inside the module's triple-quoted docstring.

    Outside text (the spec's file name) must not end the docstring or be read as an
    escape: a quote, a backslash or a character that is not printable is written as
    ``<U+XXXX>``; everything else, non-ASCII letters included, stays as it is.
    """
    return "".join(
        c if c.isprintable() and c not in '"\\' else f"<U+{ord(c):04X}>" for c in text
    )


def regenerate_words(
    source: str,
    out_dir: str | os.PathLike[str] | None = None,
    target: str | None = None,
) -> list[str]:
    """The shell words of the command that writes the module again, for its docstring.

    The spec's path as it was given (relative to the working directory when it was
    given as an absolute path inside it), `-o DIR` when DIR is not the default and
    `--target T` when the module is not the NumPy one (target None), each quoted for a
    POSIX shell and escaped for the docstring: `generated/` stays the same on every
    machine. A spec not read from a file (YAML text, a dict) is named as such, in one
    word of prose.
    """
    if source.startswith("<") and source.endswith(">"):
        if target is not None:
            return [f'symgrad.generate(spec, target="{target}") with the same spec']
        return [
            f"symgrad.generate(spec) with the same spec (given as {source}, not a file)"
        ]
    words = ["symgrad", "generate", _shown_path(source)]
    if out_dir is not None and Path(_shown_path(out_dir)) != Path(DEFAULT_OUT_DIR):
        words += ["-o", _shown_path(out_dir)]
    if target is not None:
        words += ["--target", target]
    return [docstring_text(shlex.quote(word)) for word in words]


def _shown_path(path: str | os.PathLike[str]) -> str:
    """path as given; an absolute one inside the working directory relative to it."""
    given = Path(path)
    if given.is_absolute():
        try:
            return str(given.relative_to(Path.cwd()))
        except ValueError:
            pass
    return os.fspath(path)


def runtime_code() -> str:
    """The runtime every module ends with: the shared runtime, then runtime.py."""
    return runtime_of(RUNTIME)


def runtime_of(target_runtime: Path) -> str:
    """symgrad/runtime_shared.py and then a target's runtime file, each after its
    configuration block: the runtime a module of that target ends with."""
    return copied_runtime(RUNTIME_SHARED) + "\n\n\n" + copied_runtime(target_runtime)


@functools.cache
def copied_runtime(path: Path) -> str:
    """A runtime file from the end of its configuration block on."""
    text = path.read_text(encoding="utf-8")
    _, found, code = text.partition(CONFIG_END)
    if not found:
        raise RuntimeError(f"symgrad bug: {path} has no line {CONFIG_END.strip()!r}")
    return code.strip("\n")


def render(
    d: Derivation,
    out_dir: str | os.PathLike[str] | None = None,
    numba: bool = False,
) -> str:
    """The formatted source of the generated module.

    Args:
        d: the derivation.
        out_dir: the output directory as the user gave it, for the docstring's
            regenerate command (None: the default, generated).
        numba: the numba target (`--target numba`): the same module, its step's
            elementwise statements fused into numba kernels.

    Raises:
        RuntimeError: the template produced code that black or compile() rejects; that
            is a bug in symgrad, and nothing has been written.
    """
    source = (
        environment()
        .get_template("module.py.jinja")
        .render(**context(d, out_dir, numba))
    )
    head = formatted(
        source, f"{d.spec.name}.py", f"the module generated for {d.spec.name!r}"
    )
    return with_runtime(head, runtime_code())


def with_runtime(head: str, runtime: str) -> str:
    """The formatted derived part of a module, then its runtime (already black-clean),
    two blank lines apart as black separates top-level definitions."""
    return head + "\n\n" + runtime + "\n"


def formatted(source: str, filename: str, what: str) -> str:
    """source (a module's derived part) as black lays it out in the whole module
    (symgrad/layout.py: by chunk, cached), then compiled: a failure is symgrad's bug,
    and raises before anything is written."""
    try:
        text = layout.formatted(source)
        compile(text, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:  # black.InvalidInput is a ValueError
        raise RuntimeError(
            f"symgrad bug: {what} does not compile ({exc}); nothing was written. "
            "Please report it with the spec."
        ) from exc
    return text
