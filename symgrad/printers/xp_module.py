"""The derived part of an array-API module (`<name>_xp.py`), printed from a Plan.

The third printer of the plan's statements, beside numpy_module.py's two: every
statement becomes one functional expression of the array API standard (2023.12), over
a namespace `xp` the runtime passes in. What the standard rules out shapes the forms:

- no `out=`, nothing written in place: each statement binds a new array;
- no Python scalar as a function argument (`maximum(Z, 0)` is refused in 2023.12): a
  constant operand of a function is `xp.zeros_like(A)`, `xp.ones_like(A)` or
  `xp.full_like(A, c)` of an array A of the expression, so it takes A's dtype and
  device; Python numbers appear only as operands of operators (`0.5 * Z`, `D / m`);
- no bool × float: a 0/1 rule (ReLU's mask) is `xp.astype(condition, dt)`, dt the
  dtype of X (never a 0-d array or a NumPy scalar, which would promote float32);
- ReLU as `xp.maximum(Z, zeros)`, the direct form the plan gives A = Z ⊙ M
  (plan.direct_forms), so that NaN propagates (`xp.where(Z > 0, ...)` would turn it
  into 0) and `_forward` reads no mask; every other 0/1 rule keeps the plan's product
  with its mask;
- stable forms from standard functions only (no errstate, `where` evaluates both
  branches): softplus as `xp.logaddexp(zeros, u)`, the sigmoid from e^{-|z|} (no
  overflow), exp-branches of piecewise rules clamped into their domain (code.py), erf
  from its series and continued fraction (the standard has no erf).

- images (conv2d, pooling, flatten): a window view as `take` of index arrays (the
  host computes them with NumPy, as init_params draws), a contraction as one
  `matmul` of permuted and reshaped operands (`_einsum`), the scatter back through
  the windows one kernel offset at a time (each offset's image spread to the stride
  by `stack` and `reshape`, moved into place by `concat` with zeros, the kh·kw images
  added), a window's first maximum from `argmax` (which returns the first); all of
  fixed shapes, for jax.jit.

Functions printed (all take the namespace first; inputs are checked arrays of one dtype):

    _forward(xp, params, X, training, noise) -> Ŷ
    _loss(xp, params, X, Y, training, noise) -> the loss, a 0-d array
    _loss_and_grad(xp, params, X, Y, noise) -> (loss, grads, statistics)
    _update(xp, params, grads, state) -> (params, state)

Each function holds only the statements its results need (ReLU's masks are not in
`_forward`, the softmax is not in `_loss`). Dropout's keep-masks come from `noise`,
uniform numbers in [0, 1) the caller passes (see runtime_xp.py); without it, no
dropout. Batchnorm's running statistics are results of `_loss_and_grad` (a dict over
BUFFER_NAMES, empty without batchnorm), never written into params.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .. import naming as nm
from .. import schedules
from ..plan import (
    LOSS,
    Block,
    Condition,
    Draw,
    Item,
    Plan,
    Stmt,
    arr,
    direct_forms,
    flatten,
    live,
)
from ..plan import resolve as resolved
from ..sym.arrays import KeepMask, ReductionBase
from ..sym.code import NumPyCode, _clamped_pieces, number_text
from ..sym.functions import (
    avoid,
    inv_erfcx,
    log_erf,
    log_erfc,
    log_softmax,
    numeric,
    sigmoid,
    softplus,
    variables,
)
from .blocks import INDENT, Lines, Walker

DTYPE = "dt"  # the local naming X's dtype, for xp.astype(mask, dt)

# NumPy's names -> the standard's, for the functions SymPy's NumPy printer knows
_STANDARD_NAMES = {
    "arccos": "acos",
    "arcsin": "asin",
    "arctan": "atan",
    "arctan2": "atan2",
    "arccosh": "acosh",
    "arcsinh": "asinh",
    "arctanh": "atanh",
    "power": "pow",
    "absolute": "abs",
}


class XPCode(NumPyCode):
    """Prints expressions over array symbols as array-API code in the namespace `xp`.

    `shapes` maps array names to their shapes (the plan's): a constant operand of a
    function is made like the expression's largest array.
    """

    def __init__(self, shapes: dict[str, tuple] | None = None) -> None:
        super().__init__()
        self.shapes = dict(shapes or {})
        self.dtype_uses = 0  # how often the printed code named DTYPE
        self.numbers: set[sp.Symbol] = set()  # symbols that are Python numbers

    # names: xp.<standard name>
    def _module_format(self, fqn: str, register: bool = True) -> str:
        out = super()._module_format(fqn, register=False)
        if out.startswith("np."):
            name = out[len("np.") :]
            return "xp." + _STANDARD_NAMES.get(name, name)
        return out

    # constants made like an array of the expression
    def _like(self, expr: sp.Expr) -> str:
        """The name of the array a constant operand of expr is made like: the one of
        largest rank (an (m, n) array before a row statistic (m, 1))."""
        arrays = [
            s
            for s in variables(expr)
            if isinstance(s, sp.Symbol) and s not in self.numbers
        ]
        if not arrays:
            raise RuntimeError(f"symgrad bug: no array to make a constant like: {expr}")

        def size(s: sp.Symbol) -> tuple:
            shape = self.shapes.get(s.name, ())
            return (len(shape), sum(d != 1 for d in shape), s.name)

        return max(arrays, key=size).name

    def _full(self, like: str, value: sp.Expr) -> str:
        """An array like `like` filled with the number value."""
        if value is sp.nan:
            return f"xp.full_like({like}, xp.nan)"
        if value in (sp.oo, -sp.oo):
            return f"xp.full_like({like}, {'-' if value == -sp.oo else ''}xp.inf)"
        if value == 0:
            return f"xp.zeros_like({like})"
        if value == 1:
            return f"xp.ones_like({like})"
        text = number_text(value)
        number = float(numeric(value))
        if number.is_integer() and abs(number) < 1e15:
            text += ".0"  # a float fill value: the array's dtype, whatever the number
        return f"xp.full_like({like}, {text})"

    def _operand(self, value: sp.Expr, like: str) -> str:
        if variables(value) and not variables(value) <= self.numbers:
            return self._print(value)
        if variables(value):  # of Python numbers only
            return f"xp.full_like({like}, {self._print(value)})"
        return self._full(like, value)

    # functions whose constant arguments must be arrays
    def _print_Max(self, expr: sp.Max) -> str:
        return self._xfold("xp.maximum", expr)

    def _print_Min(self, expr: sp.Min) -> str:
        return self._xfold("xp.minimum", expr)

    def _xfold(self, fn: str, expr: sp.Expr) -> str:
        like = self._like(expr)
        args = sorted(  # arrays first
            expr.args, key=lambda x: not (variables(x) - self.numbers)
        )
        out = self._print(args[0])
        for arg in args[1:]:
            out = f"{fn}({out}, {self._operand(arg, like)})"
        return out

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        pieces = list(expr.args)
        if pieces[-1][1] is not sp.true:
            pieces.append((sp.nan, sp.true))
        values = [v for v, _ in pieces]
        if len(pieces) == 2 and values in ([0, 1], [1, 0]):
            # a 0/1 rule: a float array (the standard has no bool × float)
            cond = pieces[0][1] if values[0] == 1 else pieces[0][1].negated
            self.dtype_uses += 1
            return f"xp.astype({self._print(cond)}, {DTYPE})"
        pieces = _clamped_pieces(pieces)
        like = self._like(expr)
        out = self._operand(pieces[-1][0], like)
        for value, cond in reversed(pieces[:-1]):
            out = f"xp.where({self._print(cond)}, {self._operand(value, like)}, {out})"
        return out

    def _print_softplus(self, expr: softplus) -> str:
        like = self._like(expr)
        return f"xp.logaddexp(xp.zeros_like({like}), {self._print(expr.args[0])})"

    def _print_sigmoid(self, expr: sigmoid) -> str:
        self.helpers.add("_sigmoid")
        return f"_sigmoid(xp, {self._print(expr.args[0])})"

    def _print_avoid(self, expr: avoid) -> str:
        x, p, safe = expr.args
        xs = self._print(x)
        return (
            f"xp.where({xs} == {self._print(p)}, {self._full(self._like(x), safe)}, "
            f"{xs})"
        )

    def _print_log_softmax(self, expr: log_softmax) -> str:
        self.helpers.add("_log_softmax")
        return f"_log_softmax(xp, {self._print(expr.args[0])})"

    def _print_erf(self, expr: sp.erf) -> str:
        self.helpers.add("_erf")
        return f"_erf(xp, {self._print(expr.args[0])})"

    def _print_erfc(self, expr: sp.erfc) -> str:
        self.helpers.update({"_erf", "_erfc"})  # built on _erfcx (sym/special.py)
        return f"_erfc(xp, {self._print(expr.args[0])})"

    def _print_log_erf(self, expr: log_erf) -> str:
        self.helpers.update({"_erf", "_erfc", "_log_erf"})
        return f"_log_erf(xp, {self._print(expr.args[0])})"

    def _print_log_erfc(self, expr: log_erfc) -> str:
        self.helpers.update({"_erf", "_log_erfc"})  # built on _erf (sym/special.py)
        return f"_log_erfc(xp, {self._print(expr.args[0])})"

    def _print_inv_erfcx(self, expr: inv_erfcx) -> str:
        self.helpers.update({"_erf", "_inv_erfcx"})
        return f"_inv_erfcx(xp, {self._print(expr.args[0])})"

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        if variables(expr) and expr.exp in (sp.S.Half, -sp.S.Half):
            root = f"xp.sqrt({self._print(expr.base)})"
            return root if expr.exp == sp.S.Half else f"1 / {root}"
        return super()._print_Pow(expr, rational)

    def _print_ReductionBase(self, expr: ReductionBase) -> str:
        arg = self._print(expr.args[0])
        if expr.axis is None:
            return f"xp.{expr.op}({arg})"
        keep = ", keepdims=True" if expr.keepdims else ""
        return f"xp.{expr.op}({arg}, axis={expr.axis}{keep})"

    def _print_KeepMask(self, expr: KeepMask) -> str:
        raise RuntimeError("symgrad bug: a keep-mask is printed from noise, not inline")

    # images: index arrays and take, matmul, standard reshapes (the module's helpers)
    def _xp_call(self, helper: str, expr: sp.Expr) -> str:
        self.helpers.add(helper)
        first = self._print(expr.args[0])
        rest = ", ".join(str(int(v)) for v in expr.args[1:])
        return f"{helper}(xp, {first}, {rest})"

    def _print_Reshaped(self, expr: sp.Expr) -> str:
        dims = ", ".join(str(int(d)) for d in expr.args[1])
        return f"xp.reshape({self._print(expr.args[0])}, (-1, {dims}))"

    def _print_Windows(self, expr: sp.Expr) -> str:
        return self._xp_call("_windows", expr)

    def _print_Padded(self, expr: sp.Expr) -> str:
        return self._xp_call("_pad", expr)

    def _print_ScatterWindows(self, expr: sp.Expr) -> str:
        return self._xp_call("_scatter_windows", expr)

    def _print_Einsum(self, expr: sp.Expr) -> str:
        self.helpers.add("_einsum")
        operands = ", ".join(self._print(o) for o in expr.args[1:])
        return f'_einsum(xp, "{expr.args[0].name}", {operands})'

    def _print_WindowMax(self, expr: sp.Expr) -> str:
        return f"xp.max({self._print(expr.args[0])}, axis=(4, 5))"

    def _print_FirstMax(self, expr: sp.Expr) -> str:
        self.helpers.add("_first_max")
        return f"_first_max(xp, {self._print(expr.args[0])})"

    def statement(self, target: str, expr: sp.Expr, add: bool = False) -> str:
        """`target = expr` (`target = target + expr` for an accumulation: nothing is
        updated in place)."""
        code = self.doprint(expr)
        return f"{target} = {target} + {code}" if add else f"{target} = {code}"


# ------------------------------------------------------------------ statements


@dataclass(frozen=True)
class XPSource:
    """The printed functions and the helpers (`_sigmoid`, `_erf`, ...) they call."""

    source: str
    helpers: frozenset[str]


def _unpack(names: list[str], source: str) -> list[str]:
    if not names:
        return []
    keys = ", ".join(f'{source}["{n}"]' for n in names)
    return [f"{', '.join(names)} = {keys}"]


class _Function(Walker):
    """One printed function: its statements, as the plan's blocks give them."""

    CONDITIONS = {
        Condition.TRAINING: "training",
        Condition.GENERATOR: "noise is not None",
    }

    def __init__(self, printer: XPCode, bind: dict[sp.Symbol, sp.Expr]) -> None:
        super().__init__(Lines())
        self.printer = printer
        self.bind = bind
        self.body = self.lines
        self.dtype_before = printer.dtype_uses

    @property
    def uses_dtype(self) -> bool:
        return self.printer.dtype_uses > self.dtype_before

    def _print_Stmt(self, s: Stmt) -> str:  # noqa: N802
        return self.printer.statement(s.target.name, s.expr.xreplace(self.bind), s.add)

    def _print_Draw(self, s: Draw) -> str:  # noqa: N802
        """A keep-mask from the uniform numbers `noise` holds under its name."""
        self.printer.helpers.add("_keep")
        rate = number_text(s.expr.args[1])
        return f'{s.target.name} = _keep(xp, noise["{s.target.name}"], {rate})'


def _function(signature: str, doc: str, lines: list[str]) -> str:
    body = "\n".join(INDENT + line if line else "" for line in lines)
    return f'def {signature}:\n{INDENT}"""{doc}"""\n{body}\n'


def derived(plan: Plan) -> XPSource:
    """The source of _forward, _loss, _loss_and_grad and _update, and the helpers
    they call."""
    shapes = {s.name: shape for s, shape in plan.shapes.items()}
    printer = XPCode(shapes)
    bind = plan.bindings("grad")
    forward = direct_forms(plan.forward)  # ReLU as max(Z, 0): no mask read
    buffers = [p.name for p in plan.params if not p.trainable]

    def header(items: list[Item]) -> list[str]:
        """The params the statements read, a line per layer."""
        stmts = flatten(items)
        read = set().union(*(s.reads for s in stmts)) if stmts else set()
        layers: dict[int, list[str]] = {}
        for p in plan.params:
            if arr(p.name) in read:
                layers.setdefault(p.layer, []).append(p.name)
        return [line for names in layers.values() for line in _unpack(names, "params")]

    def with_dtype(f: _Function, head: list[str]) -> list[str]:
        dt = [f"{DTYPE} = X.dtype  # masks as floats of X's dtype"] * f.uses_dtype
        return head + dt + f.body.lines

    # _forward: the statements Ŷ needs, batch or running statistics by `training`
    inference = resolved(forward, {Condition.RUNNING: False})
    fwd_stmts = live(inference, {plan.output})
    f = _Function(printer, bind)
    f.walk(fwd_stmts)
    f.body.add(f"return {plan.output.name}")
    source = [
        _function(
            "_forward(xp, params, X, training, noise)",
            "Ŷ for checked inputs.",
            with_dtype(f, header(fwd_stmts)),
        )
    ]

    # _loss: the statements L needs
    loss_stmts = live(inference + plan.loss, {LOSS})
    f = _Function(printer, bind)
    f.walk(loss_stmts)
    f.body.add(f"return {nm.LOSS}")
    source.append(
        _function(
            "_loss(xp, params, X, Y, training, noise)",
            "The loss for checked inputs, a 0-d array.",
            with_dtype(f, ["m = X.shape[0]", *header(loss_stmts)]),
        )
    )

    # _loss_and_grad: training's statements for L, the gradients and the statistics
    training = resolved(forward, {Condition.TRAINING: True, Condition.RUNNING: True})
    wanted = plan.results | {arr(b) for b in buffers}
    all_stmts = live(training + plan.loss + plan.backward, wanted)
    f = _Function(printer, bind)
    f.walk(s for s in all_stmts if isinstance(s, Block) or s.phase != "backward")
    f.body.add("")
    f.walk(s for s in all_stmts if not isinstance(s, Block) and s.phase == "backward")
    grads = ", ".join(f'"{p.name}": {plan.grads[p.name].name}' for p in plan.trainable)
    stats = ", ".join(f'"{b}": {b}' for b in buffers)
    f.body.add(f"return {nm.LOSS}, {{{grads}}}, {{{stats}}}")
    head = ["m = X.shape[0]", *header(all_stmts)]
    doc = "(loss, grads, new running statistics) for checked inputs."
    source.append(
        _function(
            "_loss_and_grad(xp, params, X, Y, noise)",
            doc,
            with_dtype(f, head),
        )
    )
    source.append(_update_source(plan, printer))
    return XPSource("\n\n".join(source), frozenset(printer.helpers))


# ------------------------------------------------------------------ the update


def _update_source(plan: Plan, printer: XPCode) -> str:
    """`_update(xp, params, grads, state)`: the update's statements (plan.update; the
    learning rate not folded: the gradients are ∂L/∂p, l2 included)."""
    up = plan.update
    dtype_before = printer.dtype_uses
    schedule = (up.schedule,) if up.schedule is not None else ()
    scalars = schedule + up.scalars
    # the settings are Python numbers: a function's argument of them alone (cosine's
    # min(t₀, T)) is made an array like t₀
    printer.numbers = {sym for sym, _ in up.numbers}
    clip = (up.clip,) if up.clip is not None else ()
    used = set().union(*(a.expr.free_symbols for a in up.rule + scalars + clip))
    numbers = [(sym, value) for sym, value in up.numbers if sym in used]
    lines: list[str] = []
    if numbers:
        lines.append(
            f"{', '.join(sym.name for sym, _ in numbers)} = "
            + ", ".join(number_text(sp.Float(v)) for _, v in numbers)
        )
    lines.append('step = state["t"] + 1')
    if schedule:
        lines.append(
            f'{schedules.T0.name} = xp.astype(state["t"], {DTYPE})'
            "  # the steps taken before this one"
        )
    if up.scalars:
        lines.append(
            f"{up.step.name} = xp.astype(step, {DTYPE})"
            "  # the step count in the params' dtype"
        )
    if scalars:
        for a in scalars:
            lines.append(
                f"{printer.statement(a.target.name, a.expr)}"
                + (f"  # {a.note}" if a.note else "")
            )
    if up.clip is not None:
        lines += _clip_lines(plan, printer)
    state = list(up.state)
    lines.append("new_params = dict(params)  # the running statistics stay")
    keys = ", ".join(f'"{s.key}": {{}}' for s in state)
    lines.append(f'new_state = {{"t": step{", " if keys else ""}{keys}}}')
    lines.append("for k in PARAM_NAMES:")
    names = [up.param.name, up.grad.name] + [s.symbol.name for s in state]
    sources = ["params[k]", "grads[k]"] + [f'state["{s.key}"][k]' for s in state]
    lines.append(f"{INDENT}{', '.join(names)} = {', '.join(sources)}")
    body = Lines()
    for a in up.rule:
        note = f"  ({a.note})" if a.note else ""
        body.comment(f"{a.target.name} ← {_text(a.expr)}{note}", INDENT)
        body.add(INDENT + printer.statement(a.target.name, a.expr))
    lines += body.lines
    lines.append(f"{INDENT}new_params[k] = {up.param.name}")
    for s in state:
        lines.append(f'{INDENT}new_state["{s.key}"][k] = {s.symbol.name}')
    lines.append("return new_params, new_state")
    if scalars or printer.dtype_uses > dtype_before:
        lines.insert(0, f"{DTYPE} = params[PARAM_NAMES[0]].dtype")
    doc = f"(params, state) after one {up.title} step; new arrays."
    return _function("_update(xp, params, grads, state)", doc, lines)


def _clip_lines(plan: Plan, printer: XPCode) -> list[str]:
    """The gradients scaled together by clip = min(1, c / (‖g‖ + 1e-6)), ‖g‖ the
    global 2-norm of the gradients without l2 (taken out of the weights' first), then
    l2·W added back to each weight's: new arrays, in a new dict."""
    up = plan.update
    assert up.clip is not None and up.clip_rule is not None
    p, g = up.param, up.grad
    lines = ["grads = dict(grads)"]
    if up.unclipped is not None:
        lines.append(f"# {g.name} ← {_text(up.unclipped.expr)}: {up.unclipped.note}")
        for q in plan.trainable:
            if q.weight:
                ps, gs = _entry("params", q.name), _entry("grads", q.name)
                expr = up.unclipped.expr.xreplace({p: ps, g: gs})
                lines.append(f"{gs.name} = {printer.doprint(expr)}")
    squares = " + ".join(
        f"xp.sum({_entry('grads', q.name).name} ** 2)" for q in plan.trainable
    )
    lines.append(f"{nm.GRAD_NORM} = xp.sqrt({squares})  # the global 2-norm")
    lines.append(
        f"{printer.statement(up.clip.target.name, up.clip.expr)}  # {up.clip.note}"
    )
    for q in plan.trainable:
        rule = up.clip_rule
        if q.weight and up.clip_decay_rule is not None:
            rule = up.clip_decay_rule
        ps, gs = _entry("params", q.name), _entry("grads", q.name)
        lines.append(f"# {g.name} ← {_text(rule.expr)}  ({rule.note})")
        lines.append(
            f"{gs.name} = {printer.doprint(rule.expr.xreplace({p: ps, g: gs}))}"
        )
    return lines


def _entry(mapping: str, key: str) -> sp.Symbol:
    """The symbol printed as mapping["key"]."""
    return sp.Symbol(f'{mapping}["{key}"]')


def _text(e: sp.Expr) -> str:
    from ..sym.text import text

    return text(e).replace(" - ", " − ")
