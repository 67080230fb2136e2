"""The derived part of a NumPy module, printed from a Plan.

Two printers of the same statements:

- `allocating(plan)`: `_forward_pass` (the forward pass, once, for `forward`, `loss` and
  `loss_and_grad`), `_forward`, `_loss` and `_loss_and_grad`, each statement one NumPy
  expression (code.py);
- `in_place(plan)`: `_make_work` and `_step`, each statement ufunc calls with `out=` into
  the work arrays the plan's storage assigns (inplace.py's Emitter), then the optimizer's
  update; `in_place(plan, fused=True)` (the numba target) the same, but with the runs of
  elementwise statements as numba kernels (fused.py's Fuser) where it takes them.

Neither reads the other's output. Comments come from the statements: the equation a line
implements and, once, why it has its form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import sympy as sp

from .. import naming as nm
from ..plan import (
    BATCH,
    L2,
    LOSS,
    SCALE,
    Assign,
    Condition,
    Plan,
    Stmt,
    Y,
    arr,
    resolve,
)
from ..sym.arrays import Cropped, FirstMax, Padded, ScatterWindows, WindowMax
from ..sym.code import DTYPE, NumPyCode, number_text
from ..sym.functions import numeric
from .blocks import INDENT, Lines, Walker, equation_comment, note_comment
from .fused import HELPER, Fuser
from .inplace import EXP_MAX, Emitter, Scratch


def _function(signature: str, doc: str, body: Lines) -> str:
    return f"def {signature}:\n{INDENT}{_doc(doc)}\n{body.body()}\n"


def _doc(text: str) -> str:
    return f'"""{text}"""'


def _unpack(names: Iterable[str], source: str, keys: str = "PARAM_NAMES") -> str:
    names = list(names)
    return f"{', '.join(names)} = (" + f"{source}[k] for k in {keys})"


# ------------------------------------------------------------------ allocating


def allocating(plan: Plan) -> tuple[str, set[str]]:
    """The source of _forward_pass, _forward, _loss and _loss_and_grad, and the helpers
    (`_sigmoid`, `_erf`, ...) it calls."""
    printer = NumPyCode()
    grad = plan.bindings("grad")
    params = [p.name for p in plan.trainable]
    buffers = [p.name for p in plan.params if not p.trainable]
    kept = plan.forward_values()

    forward = Lines()
    forward.add(
        _unpack(params + buffers, "params", "PARAM_NAMES + BUFFER_NAMES")
        if buffers
        else _unpack(params, "params")
    )
    _forward_lines(plan, forward, printer, grad)
    out = plan.output.name
    forward.add(f"return {out}, ({_names([v.name for v in kept])})")

    def loss_lines(body: Lines) -> None:
        _Allocating(body, printer, grad, lambda s: "").walk(plan.loss)

    def head(stmts: list[Stmt], training: str, unpack: bool) -> list[str]:
        """m, the forward pass's values and the params, each name the statements do
        not read written `_`: the forward pass returns every value any reader needs,
        and linters (ruff's RUF059) flag unpacked names left unused."""
        read = {x.name for t in stmts for x in t.expr.xreplace(grad).free_symbols}
        lines = ["m = X.shape[0]"]
        if unpack:
            lines.append(_unpack(_read_or_blank(params, read), "params"))
        values = _names(_read_or_blank([v.name for v in kept], read))
        lines.append(
            f"{_read_or_blank([out], read)[0]}, ({values})"
            f" = _forward_pass(params, X, {training}, rng)"
        )
        return lines

    loss = Lines(head(plan.loss, "training", plan.l2))
    loss_lines(loss)
    loss.add(f"return {nm.LOSS}")

    both = Lines(head(plan.loss + plan.backward, "True", True))
    loss_lines(both)
    both.add("")
    _Allocating(both, printer, grad, _backward_comment).walk(plan.backward)
    grads = ", ".join(f'"{p}": {plan.grads[p].name}' for p in params)
    both.add(f"return {nm.LOSS}, {{{grads}}}")

    for body in (forward, loss, both):
        if any(f"{DTYPE}(" in line for line in body.lines):
            body.lines.insert(
                0, f"{DTYPE} = X.dtype.type  # typed constants keep float32"
            )
    source = "\n\n".join(
        [
            _function(
                "_forward_pass(params, X, training, rng)",
                "The forward pass: Ŷ, and the values the loss and the backward pass read.",
                forward,
            ),
            _function(
                "_forward(params, X, training, rng)",
                "Ŷ for checked inputs.",
                Lines(["return _forward_pass(params, X, training, rng)[0]"]),
            ),
            _function(
                "_loss(params, X, Y, training, rng)",
                "The loss for checked inputs.",
                loss,
            ),
            _function(
                "_loss_and_grad(params, X, Y, rng)",
                "(loss, grads) for checked inputs: the backward pass.",
                both,
            ),
        ]
    )
    return source, printer.helpers


class _Allocating(Walker):
    """Statements as allocating NumPy expressions (`_forward_pass`, `_loss_and_grad`)."""

    CONDITIONS = {
        Condition.TRAINING: "training",
        Condition.GENERATOR: "rng is not None",
    }

    def __init__(
        self,
        lines: Lines,
        printer: NumPyCode,
        bind: dict[sp.Symbol, sp.Expr],
        comment=equation_comment,
    ) -> None:
        super().__init__(lines, comment)
        self.printer, self.bind = printer, bind

    def _print_Stmt(self, s: Stmt) -> str:  # noqa: N802
        return _assign(s, self.printer, self.bind)


def _forward_lines(
    plan: Plan, body: Lines, printer: NumPyCode, bind: dict[sp.Symbol, sp.Expr]
) -> None:
    """The forward statements as the plan's blocks give them (batchnorm's statistics by
    `training`, dropout's masks by `training` and a generator), the running statistics
    left to the step; a note above a line, the equations in the step."""
    forward = resolve(plan.forward, {Condition.RUNNING: False})
    _Allocating(body, printer, bind, note_comment).walk(forward)


def _backward_comment(s: Stmt) -> str:
    """The math, where it names the value otherwise (δ2, ∂L/∂W2) or says why; `H5 =
    G5·gamma5` above `H5 = G5 * gamma5` would say nothing."""
    if s.note or not s.equation.startswith(f"{s.target.name} = "):
        return equation_comment(s)
    return ""


def _read_or_blank(names: Iterable[str], read: set[str]) -> list[str]:
    return [name if name in read else "_" for name in names]


def _names(names: list[str]) -> str:
    return ", ".join(names) + ("," if len(names) == 1 else "")


def _assign(s: Stmt, printer: NumPyCode, bind: dict[sp.Symbol, sp.Expr]) -> str:
    expr = s.expr.xreplace(bind)
    return f"{s.target.name} {'+=' if s.add else '='} {printer.doprint(expr)}"


# ------------------------------------------------------------------ in place

CONSTANTS = {  # typed 0-d arrays of the work: name -> how _make_work makes it
    "zero": "np.zeros((), dtype)",
    "one": "np.ones((), dtype)",
    "exp_max": "np.floor(np.log(np.finfo(dtype).max)).astype(dtype)",
}


@dataclass(frozen=True)
class StepCode:
    """The source of _make_work and _step, and the helpers they call."""

    source: str
    helpers: set[str]
    kernels: str = ""  # the numba target's kernel functions (fused.py)


def in_place(plan: Plan, fused: bool = False) -> StepCode:
    """`_make_work(m, dtype)` and `_step(params, state, X, Y, work)` from the plan;
    fused: runs of elementwise statements as numba kernels (fused.py), the rest as
    without."""
    printer = NumPyCode()
    step = plan.bindings("step")
    storage = plan.storage
    em = Emitter(
        printer,
        [SCALE, BATCH],
        {sp.S.Zero: "zero", sp.S.One: "one", EXP_MAX: "exp_max", SCALE: "scale"},
    )
    em.work_dict = "work" if fused else None
    em.shapes = {name: shape for name, shape in storage.arrays.items()}
    em.shapes.update({s.name: shape for s, shape in plan.shapes.items()})
    home = {v: arr(name) for v, name in storage.home.items()}
    pools: dict[tuple, Scratch] = {}
    scratch_shapes: dict[str, tuple] = {}
    stmts = plan.step_pass()

    body = Lines()

    labels: set[str] = set()

    def pool(l: int, shape: tuple) -> Scratch:  # noqa: E741
        """Layer l's scratch arrays of a shape: tmp{l}, or tmp{l}_16 for a second
        shape in the layer."""
        if (l, shape) not in pools:
            label = str(l) if str(l) not in labels else f"{l}_{_shape_label(shape)}"
            labels.add(label)
            pools[(l, shape)] = Scratch(label)
        return pools[(l, shape)]

    em.pool_for = lambda shape: pool(layer_now[0], shape)
    layer_now = [0]
    shape_now: list[tuple] = [()]
    fuser = (
        Fuser(
            em.shapes,
            {SCALE: ("scale", "scale[()]"), BATCH: ("m", "m")},
            lambda product, dest: em.into(
                product, dest, pool(layer_now[0], shape_now[0])
            )
            or [],
        )
        if fused
        else None
    )
    joined = _joined(stmts, em) if fused else {}
    printed = -1  # the last statement printed with those before it (_joined)
    for k, s in enumerate(stmts):
        if k <= printed:
            continue
        if fuser is not None and (s.target == LOSS or not isinstance(s, Assign)):
            body.add(*fuser.close())
        if s.target == LOSS:
            before = len(body.lines)
            _loss_lines(
                plan, s, em, body, home, pool(plan.derivation.depth, plan.shapes[Y])
            )
            # the copies of windows of an array these lines name are not kept
            named = set(re.findall(r"\w+", "\n".join(body.lines[before:])))
            for viewed in sorted({v for _, _, v in em.copies.values()} & named):
                em.forget(viewed)
            continue
        expr = s.expr.xreplace(step).xreplace(home)
        dest = home[s.target]
        em.forget(dest.name)  # the windows of dest copied earlier are stale now
        owner = dest if dest in expr.free_symbols else None
        shape = plan.shapes[s.target]
        if s.target in plan.roles:
            layer = plan.roles[s.target][1]
        else:  # a parameter's gradient, or a running statistic: its layer's
            layer = next(
                p.layer
                for p in plan.params
                if s.target.name in (p.name, nm.grad(p.name))
            )
        layer_now[0], shape_now[0] = layer, shape
        if k in joined and fuser is not None:  # one call: see _joined
            rest = stmts[k + 1 : k + joined[k]]
            for t in rest:
                em.forget(home[t.target].name)
            body.add(*fuser.close())
            for t in (s, *rest):
                body.comment(equation_comment(t))
            exprs = [expr] + [t.expr.xreplace(step).xreplace(home) for t in rest]
            dests = [dest.name] + [home[t.target].name for t in rest]
            body.add(*em.joined(exprs, dests))
            printed = k + joined[k] - 1
            continue
        if fuser is not None and isinstance(s, Assign):
            taken = fuser.take(dest.name, numeric(expr))
            if taken is not None:
                body.add(*taken[0])
                body.comment(equation_comment(s))
                body.add(*taken[1])
                continue
        lines = em.into(expr, dest.name, pool(layer, shape), owner=owner)
        if fuser is not None:
            if lines is not None and fuser.can_defer(expr, dest.name):
                later = Lines([], body.seen)  # after the kernel: see Fuser.defer
                later.comment(equation_comment(s))
                fuser.defer(expr, dest.name, later.lines + lines)
                continue
            body.add(*fuser.close())
        if lines is None:  # no order of the lines works in place: via scratch
            scratch = pool(layer, shape)
            tmp = scratch.take()
            lines = em.into(expr, tmp, scratch) + [f"np.copyto({dest.name}, {tmp})"]
            scratch.give(tmp)
        body.comment(equation_comment(s))  # the code names dest: out=g1
        body.add(*lines)

    if fuser is not None:
        body.add(*fuser.close())
    em.forget(None)
    update = _update_lines(plan, em, fuser)
    for (_, shape), scratch in pools.items():
        for name in scratch.made:
            scratch_shapes[name] = shape

    # the work arrays, a layer a line
    work: list[tuple[str, str]] = []
    code = body.lines + update.lines
    for name, shape in storage.arrays.items():
        if joined and not _uses(name, code):  # a product a scatter multiplies
            continue
        work.append((name, _empty(shape, offsets_outermost=name not in em.contracted)))
    for name, shape in scratch_shapes.items():
        work.append((name, _empty(shape)))
    for name in storage.per_param:  # the update's scratch, one array per parameter
        work.append(
            (name, "{k: np.empty(PARAM_SHAPES[k], dtype) for k in PARAM_NAMES}")
        )
    for n in sorted(em.ones_rows):
        work.append((nm.ones_row(n), f"np.ones(({n}, 1), dtype)"))
    if fuser is None or _uses(nm.ONES_BATCH, body.lines + update.lines):
        work.append((nm.ONES_BATCH, "np.ones(m, dtype)"))  # (kernels sum in place)
    scale = plan.step_scale * BATCH  # η or 1, times 1/m
    work.append((nm.SCALE, f"np.array({_scalar(scale)} / m, dtype)"))
    work += [(n, CONSTANTS[n]) for n in sorted(em.used) if n in CONSTANTS]
    layer_of = dict(storage.layer_of)
    for name in scratch_shapes:
        layer_of[name] = _layer(name)
    make = Lines()
    make.add("return {")
    make.add(*(f'{INDENT}"{name}": {how},' for name, how in work))
    make.add("}")

    head = Lines()
    head.add("m = X.shape[0]")
    params = [p.name for p in plan.trainable]
    buffers = [p.name for p in plan.params if not p.trainable]
    head.add(
        _unpack(params + buffers, "params", "PARAM_NAMES + BUFFER_NAMES")
        if buffers
        else _unpack(params, "params")
    )
    head.add(_unpack([nm.grad(p) for p in params], 'state["grads"]'))
    head.add(*_unpack_work(work, layer_of))
    if DTYPE in printer.helpers:
        head.add(f"{DTYPE} = X.dtype.type  # typed constants keep float32 float32")
    if plan.dropout:
        head.add('rng = state["rng"]  # dropout\'s masks')
    check = _finite_lines([nm.grad(p) for p in params], buffers)
    step_body = Lines(
        head.lines + [""] + body.lines + [""] + check.lines + [""] + update.lines,
        body.seen,
    )
    step_body.add('state["t"] += 1', f"return {nm.LOSS}")
    source = "\n\n".join(
        [
            _function(
                "_make_work(m, dtype)",
                "The work arrays of _step for a batch of m examples.",
                make,
            ),
            _function(
                "_step(params, state, X, Y, work)",
                "One step on checked inputs: the numbers of loss_and_grad, then the update.",
                step_body,
            ),
        ]
    )
    kernels = "\n\n\n".join([HELPER, *fuser.kernels]) if fuser is not None else ""
    return StepCode(source, set(printer.helpers), kernels)


def _finite_lines(grads: list[str], buffers: list[str]) -> Lines:
    """The check between the backward pass and the update (CHECK_FINITE): the loss,
    every gradient and the running statistics the forward pass renewed (batchnorm's
    variance overflows where its normalized output and the gradients do not) finite,
    or _step returns before its first write into params or the optimizer's state,
    state["t"] unmoved, which is how the runtime tells a refused step (runtime.py's
    _step_or_nothing). Σ a² per array, np.vdot: one BLAS pass and a scalar, no
    temporary; NaN or inf in, NaN or inf out. A sum of squares can also overflow (past
    √max: 1.3e154 in float64, 1.8e19 in float32) for finite entries: then the
    runtime's _finite_update looks at each entry, so a step is refused exactly when
    the loss or an entry is NaN or inf."""
    lines = Lines()
    lines.comment(
        "the update, if the loss, the gradients and the running statistics are finite"
        " (CHECK_FINITE): Σ a² is NaN or inf if an entry is (or if it overflows: then"
        ' each entry is looked at); if not, nothing more is written and state["t"]'
        " stays, for the runtime"
    )
    squares = " + ".join(f"np.vdot({a}, {a})" for a in grads + buffers)
    lines.add(
        "if CHECK_FINITE:",
        f"{INDENT}{nm.FINITE} = {nm.LOSS} + {squares}",
        f"{INDENT}if not np.isfinite({nm.FINITE}) and not _finite_update("
        f'{nm.LOSS}, params, state["grads"]):',
        f"{INDENT * 2}return {nm.LOSS}",
    )
    return lines


def _uses(name: str, lines: list[str]) -> bool:
    """Some code line (not a comment) names `name`."""
    word = re.compile(rf"\b{re.escape(name)}\b")
    return any(word.search(line) for line in lines if not line.lstrip().startswith("#"))


def _shape_label(shape: tuple) -> str:
    return "x".join(str(d) for d in shape)


def _layer(name: str) -> int:
    digits = "".join(c if c.isdigit() else " " for c in name).split()
    return int(digits[0]) if digits else 0


def _empty(shape: tuple, offsets_outermost: bool = False) -> str:
    """A work array of shape; a window-shaped one (m, C, H', W', kh, kw) is laid out
    with the kernel offsets outside the window positions, so that each offset's
    entries (the slice [..., p, q] the window helpers read and write) are whole
    images, and a contraction can write its products straight into it; one that no
    contraction writes (offsets_outermost: a pooling's mask, its gradient) with the
    offsets outermost, each offset's entries one run of memory that a ufunc goes
    through in one inner loop (NumPy's cost on these arrays is per run, not per
    entry)."""
    if len(shape) == 6:
        m, c, ho, wo, kh, kw = (str(d) for d in shape)
        if offsets_outermost:
            return (
                f"np.empty(({kh}, {kw}, {m}, {c}, {ho}, {wo}), dtype)"
                ".transpose(2, 3, 4, 5, 0, 1)"
            )
        return (
            f"np.empty(({m}, {c}, {kh}, {kw}, {ho}, {wo}), dtype)"
            ".transpose(0, 1, 4, 5, 2, 3)"
        )
    dims = ", ".join(str(d) for d in shape)
    return (
        f"np.empty(({dims}), dtype)" if len(shape) > 1 else f"np.empty({dims}, dtype)"
    )


def _scalar(e: sp.Expr) -> str:
    return number_text(e) if not e.free_symbols else str(e)


def _unpack_work(work: list[tuple[str, str]], layer_of: dict[str, int]) -> list[str]:
    """Lines that name the work arrays from the dict `work`, one line per layer."""
    by_layer: dict[int, list[str]] = {}
    for name, _ in work:
        by_layer.setdefault(layer_of.get(name, 0), []).append(name)
    order = sorted(by_layer, key=lambda l: (l == 0, l))  # noqa: E741
    return [
        f"{', '.join(names)} = {', '.join(f'work[{name!r}]' for name in names)}"
        for names in (by_layer[l] for l in order)  # noqa: E741
    ]


def _loss_lines(
    plan: Plan,
    s: Stmt,
    em: Emitter,
    body: Lines,
    home: dict[sp.Symbol, sp.Symbol],
    pool: Scratch,
) -> None:
    """L = Σ ℓ / m as np.vdot sums; L += l2/2 Σ ‖W‖² likewise."""
    from ..sym.arrays import Total

    expr = s.expr.xreplace(home)
    totals = list(expr.atoms(Total))
    if not s.add:
        (total,) = totals
        body.comment(s.equation)
        body.add(*em.total(total.args[0], pool, nm.LOSS, f"{nm.TARGET}.size"))
        body.add(f"{nm.LOSS} = float({nm.LOSS}) / m")
        return
    squares = " + ".join(
        f"np.vdot({t.args[0].base.name}, {t.args[0].base.name})"
        for t in sorted(totals, key=lambda t: (_layer(str(t)), str(t)))
    )
    body.add(f"{nm.LOSS} += 0.5 * {nm.L2} * float({squares})")


def _joined(stmts: tuple, em: Emitter) -> dict[int, int]:
    """The numba target's runs of statements printed as one call (Emitter.joined):
    the first statement's index, and how many. Statements k and k + 1 are

    - an elementwise product of two window-shaped arrays (an einsum that sums
      nothing: the pooling gradient through the first-maximum mask), read by nothing
      else, and its scatter back onto the image (ScatterWindows): one _scatter_windows
      that multiplies as it scatters, one pass over the windows instead of two, the
      product's array not written;
    - the input gradient of a convolution at each window entry (an einsum of the
      gradient and the weights summing the filters), read by nothing else, and its
      scatter, for the window the numba module's direct kernels take (3×3, stride
      1): one _conv_scatter, a transposed convolution computed from the gradient,
      the window-shaped array neither written nor made (nor the contraction's work
      arrays); where statement k + 2 crops the scattered image (the gradient of a
      padding) and nothing else reads it, that crop too: the kernel computes only
      the entries kept, into the cropped array, and the padded image is not made;
    - the max of each window (WindowMax) and the mask of its first maximum
      (FirstMax) of the same windows: one _window_max that writes both, one pass;
      where statement k + 2 pads the maxima (the next convolution's input) and
      nothing else reads them, that padding too: the maxima are written inside the
      padded array, and the array of the maxima alone is not made.
    """
    reads: dict[sp.Symbol, int] = {}
    for s in stmts:
        for x in s.expr.free_symbols:
            reads[x] = reads.get(x, 0) + 1

    def then(at: int, kind: type, source: sp.Symbol, readers: int) -> bool:
        """Whether statement `at` is a `kind` of source, which only `readers`
        statements read."""
        u = stmts[at] if at < len(stmts) else None
        return (
            isinstance(u, Assign)
            and isinstance(u.expr, kind)
            and u.expr.args[0] == source
            and reads.get(source) == readers
        )

    found: dict[int, int] = {}
    joined_until = 0  # the statements before it are printed where found says
    for k, (s, t) in enumerate(zip(stmts[:-1], stmts[1:], strict=True)):
        if k < joined_until or not (isinstance(s, Assign) and isinstance(t, Assign)):
            continue
        scattered = then(k + 1, ScatterWindows, s.target, 1)
        scatter = scattered and em.is_product(s.expr)
        # the input gradient of a 3×3 stride-1 convolution at each window entry and
        # its scatter: one transposed convolution
        conv = scattered and em.is_transposed_conv(s.expr, t.expr)
        maxima = (
            isinstance(s.expr, WindowMax)
            and isinstance(t.expr, FirstMax)
            and t.expr.args == (s.expr.args[0], s.target)
        )
        if scatter:
            found[k] = 2
        elif conv:
            found[k] = 3 if then(k + 2, Cropped, t.target, 1) else 2
        elif maxima:  # the maxima read by the mask's statement and the padding
            found[k] = 3 if then(k + 2, Padded, s.target, 2) else 2
        else:
            continue
        joined_until = k + found[k]
    return found


# ------------------------------------------------------------------ the update


def _update_lines(plan: Plan, em: Emitter, fuser: Fuser | None = None) -> Lines:
    """The update's statements (plan.update), in place: unrolled per parameter when the
    rule is a single statement and needs no temporaries (sgd), else a loop over the
    parameters, with the update's scratch arrays (plan.storage.per_param) beside the
    state's. With a fuser (the numba target): one kernel call per parameter, the whole
    rule in one pass over its arrays, where the kernels print the rule."""
    up = plan.update
    out = Lines()
    clip_scalars = (up.clip,) if up.clip is not None else ()
    clip_scalars += up.clip_scalars
    em.scalars |= {sym for sym, _ in up.numbers}
    em.scalars |= {up.step, L2} | {a.target for a in up.scalars + up.step_scalars}
    em.scalars |= {a.target for a in clip_scalars}
    if up.schedule is not None:
        em.scalars.add(up.schedule.target)
    used = set().union(
        *(a.expr.free_symbols for a in up.step_rule + up.scalars + up.step_scalars),
        *(a.expr.free_symbols for a in clip_scalars),
    )
    if up.decay_rule:
        used |= set().union(*(a.expr.free_symbols for a in up.decay_rule))
    numbers = [(sym, value) for sym, value in up.numbers if sym in used]
    if numbers:
        out.add(
            f"{', '.join(sym.name for sym, _ in numbers)} = "
            + ", ".join(_setting(value) for _, value in numbers)
        )
    if up.schedule is not None:  # the module's learning_rate(t) prints its formula
        out.add(
            f'{up.schedule.target.name} = learning_rate(state["t"])'
            f"  # {up.schedule.note}"
        )
    if up.scalars:
        out.add(f'{up.step.name} = state["t"] + 1')
        for a in up.scalars:
            out.add(f"{a.target.name} = {em.printer.doprint(a.expr)}  # {a.note}")
    if up.clip is not None:
        out.add(*_clip_lines(plan, em))
    for a in up.step_scalars:
        out.add(f"{a.target.name} = {em.printer.doprint(a.expr)}  # {a.note}")
    p, g = up.param, up.grad
    if fuser is not None:
        calls = _fused_update(plan, fuser)
        if calls is not None:
            out.add(*calls.lines)
            return out
    if len(up.step_rule) == 1 and not up.temporaries:
        # unrolled: one statement per parameter, no loop overhead
        for param in plan.trainable:
            rule = _rule_of(plan, param.weight)
            ps, gs = arr(param.name), arr(nm.grad(param.name))
            for a in rule:
                target = ps if a.target == p else a.target
                lines = em.into(
                    a.expr.xreplace({p: ps, g: gs}),
                    target.name,
                    Scratch("", new=False),
                    owner=target,
                    donors=[gs],
                )
                out.comment(
                    f"{p.name} ← {_text(a.expr)}" + (f"  ({a.note})" if a.note else "")
                )
                out.add(*lines)
        return out
    work = {scratch: name for name, scratch in plan.storage.per_param.items()}
    loop_vars = [p.name, g.name] + [s.symbol.name for s in up.state]
    loop_vars += list(up.temporaries)
    sources = ["params[k]", 'state["grads"][k]']
    sources += [f'state["{s.key}"][k]' for s in up.state]
    sources += [f"{work[name]}[k]" for name in up.temporaries]
    out.add("for k in PARAM_NAMES:")
    inner = Lines(seen=out.seen)
    inner.add(f"{', '.join(loop_vars)} = {', '.join(sources)}")
    rule = list(up.step_rule)
    for i, a in enumerate(rule):
        later = (
            set().union(*(b.expr.free_symbols for b in rule[i + 1 :]))
            if i + 1 < len(rule)
            else set()
        )
        donors = [g] if g not in later else []
        scratch = Scratch("", free=list(reversed(up.temporaries)), new=False)
        try:
            lines = em.into(
                a.expr, a.target.name, scratch, owner=a.target, donors=donors
            )
        except ValueError as exc:  # Scratch.take: none left
            raise RuntimeError(
                f"the {up.name} update needs more scratch arrays in place than the"
                f" {len(up.temporaries)} temporaries its registry entry declares,"
                f" for {a.target.name} ← {a.expr}"
            ) from exc
        if lines is None:
            raise RuntimeError(f"the {up.name} update is not printable in place: {a}")
        note = f"  ({a.note})" if a.note else ""
        inner.comment(f"{a.target.name} ← {_text(a.expr)}{note}")
        inner.add(*lines)
    out.add(*(INDENT + line for line in inner.lines))
    return out


def _rule_of(plan: Plan, weight: bool) -> tuple:
    """The in-place rule of a parameter: with l2 as a decay, a weight's own."""
    up = plan.update
    return up.decay_rule if (weight and up.decay_rule) else up.step_rule


def _fused_update(plan: Plan, fuser: Fuser) -> Lines | None:
    """The update as kernel calls (fused.py's Fuser.update), one per trainable
    parameter, its rule's comment above its first call; None where a rule is not
    printable in a kernel."""
    up = plan.update
    out = Lines()
    made = len(fuser.kernels), dict(fuser.updates)
    for param in plan.trainable:
        rule = _rule_of(plan, param.weight)
        # from the dicts: a number of the update may have a parameter's name (adam's
        # beta2, a layernorm's beta2), and the line of the numbers comes first
        arrays = {
            up.param: f'params["{param.name}"]',
            up.grad: f'state["grads"]["{param.name}"]',
        }
        for st in up.state:
            arrays[st.symbol] = f'state["{st.key}"]["{param.name}"]'
        call = fuser.update([(a.target, a.expr) for a in rule], arrays)
        if call is None:  # no kernel made here is called
            del fuser.kernels[made[0] :]
            fuser.updates = made[1]
            return None
        for a in rule:
            note = f"  ({a.note})" if a.note else ""
            out.comment(f"{a.target.name} ← {_text(a.expr)}{note}")
        out.add(call)
    return out


def _clip_lines(plan: Plan, em: Emitter) -> list[str]:
    """The gradients scaled together by clip = min(1, c / (‖g‖ + 1e-6)), ‖g‖ their
    global 2-norm (l2 not in them: the step binds it to 0 when clipping), then l2·W
    added to each weight's, in place."""
    up = plan.update
    assert up.clip is not None and up.clip_rule is not None
    grads = [nm.grad(q.name) for q in plan.trainable]
    squares = " + ".join(f"np.vdot({a}, {a})" for a in grads)
    lines = [
        f"{nm.GRAD_NORM} = float({squares}) ** 0.5  # the global 2-norm",
        f"{up.clip.target.name} = {em.scalar_printer.doprint(up.clip.expr)}"
        f"  # {up.clip.note}",
    ]
    lines += [
        f"{a.target.name} = {em.scalar_printer.doprint(a.expr)}  # {a.note}"
        for a in up.clip_scalars
    ]
    p, g = up.param, up.grad
    for q in plan.trainable:
        rule = up.clip_rule
        if q.weight and up.clip_decay_step is not None:
            rule = up.clip_decay_step
        ps, gs = arr(q.name), arr(nm.grad(q.name))
        into = em.into(
            rule.expr.xreplace({p: ps, g: gs}), gs.name, Scratch("", new=False), gs
        )
        if into is None:
            raise RuntimeError(f"clipping is not printable in place: {rule}")
        lines += [f"# {g.name} ← {_text(rule.expr)}  ({rule.note})", *into]
    return lines


def _setting(value: float | bool) -> str:
    return number_text(sp.Float(value)) if not isinstance(value, bool) else str(value)


def _text(e: sp.Expr) -> str:
    from ..sym.text import text

    return text(e).replace(" - ", " − ")
