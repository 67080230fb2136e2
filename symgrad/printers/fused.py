"""The numba target's kernels: runs of the step's elementwise statements as one loop nest.

`in_place(plan, fused=True)` (numpy_module.py) prints the same statements as the NumPy
step, but hands each statement to a `Fuser` first. A statement it takes joins the open
kernel; one it refuses (a matrix product alone, a loss, a window, dropout's mask,
a call of exp, log, tanh and the like, which NumPy's vectorized ufuncs compute faster
(TRANSCENDENTAL), anything its scalar printer does not know) closes the kernel and is printed by the
Emitter as in the NumPy module. A kernel is one `@numba.njit` function over the rows
of an (m, n) batch: per row, one or more passes over the row's n entries (a new pass
where a statement reads a row statistic the pass before computes), so a row's values
are still in cache when read again. What a kernel takes:

- an elementwise statement of shape (m, n), reading arrays of shapes (m, n), (n,),
  (1, n) and (m, 1) and the step's scalars; a matrix product plus elementwise terms
  (Z = A W + b) as `np.dot(out=)` before the kernel and the rest in it;
- a row statistic (m, 1): a row sum, mean or max of such an expression, or an
  elementwise statement of row statistics (σ = √(var + ε));
- a column sum, mean or max of such an expression, shape (n,) (bias and γ gradients),
  accumulated over the rows;
- the same over images: an image (m, C, H, W) is m·C rows of H·W entries (the call
  passes `x.reshape(-1, H·W)`, a view: every (m, ...) array of the step is a dense
  work array), reading images of its shape, per-channel vectors `b[None, :, None,
  None]` (row i's channel is i % C), and a convolution's contraction (Z = W ⋆ X + b)
  as the product term; Σ per channel (∂L/∂b, `nfij->f`) accumulated per row.

The optimizer's update is a kernel too (`Fuser.update`): per parameter, the whole rule
(adam's two moments and the parameter, say) in one pass over its arrays, where the
NumPy step makes one pass per operation (adam: 12 per parameter).

Every value the statements write is stored into its home array, as the NumPy step
stores it (the last value per array and pass: in a pass, a row's entries are loaded
before and stored after the statements), so the code after a kernel reads what it
would read after the NumPy lines. fastmath allows reassociation, contraction and
reciprocals (the sums vectorize) but not the no-NaN and no-inf assumptions: NaN and inf
propagate as in NumPy. A kernel's numbers, and its expressions of scalars (1 − β₁), are
locals of its arrays' dtype made before its loops (`_c1 = h2.dtype.type(1.0 - beta1)`,
the expression in float64 once): a float32 kernel computes in float32, as the NumPy
step's ufuncs do. Results agree with the NumPy step to rounding.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sympy as sp

from ..sym.arrays import (
    ColMax,
    ColMean,
    ColSum,
    Einsum,
    Expanded,
    MatProduct,
    RowMax,
    RowMean,
    RowSum,
)
from ..sym.code import FUNCTIONS
from ..sym.functions import numeric, sigmoid, softplus
from .blocks import INDENT

DECORATOR = "@_kernel"
# Functions a kernel leaves to NumPy: numba calls libm's scalar function per entry, where
# NumPy's ufunc is vectorized (SIMD). Timed on a (512, 1024) array (Intel Xeon, AVX-512,
# one process): tanh 8.7 ms in a kernel against 0.19 ms for np.tanh (float32), 9.3 against
# 0.8 ms (float64); exp 1.2 against 0.26 ms; log1p 6.5 against 0.30 ms. A statement that
# calls one closes the kernel and is printed as the NumPy module prints it; sqrt, abs,
# sign, max, min and arithmetic stay in the kernels (no slower there). numba vectorizes
# these with Intel's SVML only under an llvmlite built with LLVM's SVML patch (conda's);
# the pip wheels are not (llvmlite 0.50: `llvmlite.binding.config.has_svml` False, and
# `numba -s` says "SVML Operational: False" with intel-cmplr-lib-rt's libsvml.so loaded).
TRANSCENDENTAL = frozenset(
    (sp.exp, sp.log, sp.tanh, sp.sinh, sp.cosh, sp.sin, sp.cos, sp.atan)
)
HELPER = '''# numba's options for every kernel and inlined function of the module: fastmath
# allows reassociation (vectorized sums), contraction and reciprocals, not the
# no-NaN/no-inf assumptions: NaN and inf propagate as in NumPy; nogil: a kernel
# releases the GIL (two halves of a convolution at once, steps in other threads)
_NUMBA_OPTIONS = {
    "nogil": True,
    "error_model": "numpy",
    "fastmath": {"reassoc", "contract", "arcp"},
}


def _kernel(f):
    """f compiled by numba, cached in __pycache__ (the first call of a dtype compiles).
    numba keys its cache by file and rebuilds a kernel's globals from f.__module__: a
    fixed name, so that the module loads its cache under whatever name it is imported."""
    f.__module__ = "numba"
    return numba.njit(cache=True, **_NUMBA_OPTIONS)(f)'''
RELATIONS = frozenset(("<", "<=", ">", ">=", "==", "!="))  # printed as SymPy names them
ATOM, POW, MUL, ADD, REL, COND = range(6)  # precedence, tightest first
ROW = {RowSum: "sum", RowMean: "mean", RowMax: "max"}
COL = {ColSum: "sum", ColMean: "mean", ColMax: "max"}
CHANNEL = "[None, :, None, None]"  # Expanded's index of a per-channel vector (C,)
PRODUCTS = (MatProduct, Einsum)  # computed before a kernel (BLAS), read from its array


def _channel_sum(e: sp.Expr) -> bool:
    """e is Σ over all but the channel axis of one image (m, C, H, W): nfij->f."""
    if not isinstance(e, Einsum) or len(e.args) != 2:
        return False
    ins, res = e.args[0].name.split("->")
    return len(ins) == 4 and res == ins[1]


def _reads(e: sp.Expr) -> set[sp.Symbol]:
    """The arrays and scalars e reads entry by entry: not a product's operands (its
    result is read from the array the product went into)."""
    if isinstance(e, PRODUCTS):
        return set()
    if e.is_Symbol:
        return {e}
    return set().union(*(_reads(a) for a in e.args)) if e.args else set()


class Unsupported(Exception):
    """A node the kernel's scalar printer does not print: the Emitter prints it."""


@dataclass
class _Item:
    """One statement in a kernel: kind full | row | rowred | colred | chansum."""

    kind: str
    target: str
    expr: sp.Expr  # the elementwise part (the reduced expression of a reduction)
    op: str = ""  # sum | mean | max for a reduction
    dot: str = ""  # the array that holds the matrix product term (Z = A W + b)
    rows: object = "m"  # the kernel's rows: "m", or ("m", C) for images as rows


@dataclass
class _Pass:
    items: list[_Item] = field(default_factory=list)
    post: list[_Item] = field(default_factory=list)  # after the pass: row statistics


def _negated(e: sp.Expr) -> tuple[bool, sp.Expr]:
    """(True, -e) where e is a product with a negative number first, else (False, e)."""
    if isinstance(e, sp.Mul) and e.args[0].is_Number and e.args[0] < 0:
        c = -e.args[0]
        rest = e.args[1:] if c == 1 else (c, *e.args[1:])
        return True, sp.Mul(*rest, evaluate=False) if len(rest) > 1 else rest[0]
    if e.is_Number and e < 0:
        return True, -e
    return False, e


def _accumulate(acc: str, value: str, op: str) -> str:
    return f"{acc} = max({acc}, {value})" if op == "max" else f"{acc} += {value}"


class _Constants:
    """The numbers of a kernel as locals of its arrays' dtype, made once before its
    loops (`_c1 = h2.dtype.type(0.5)`): a float64 literal would make a float32 kernel
    compute in float64, converting each entry in and out (11 % of the layers config's
    float32 kernel time, 3 % of wide's; docs/performance.md)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}  # the number's text -> its local

    def __call__(self, text: str) -> str:
        if text not in self.names:
            self.names[text] = f"_c{len(self.names) + 1}"
        return self.names[text]

    def lines(self, array: str) -> list[str]:
        """The lines that make the locals, of `array`'s dtype."""
        return [f"{v} = {array}.dtype.type({t})" for t, v in self.names.items()]


class _Writer:
    """The names of one kernel: its arguments (in order of first use, with what the
    call passes), its locals, and the value of each array entry a pass has loaded or
    computed (full: this row's entry j, this pass; rows: this row's statistic)."""

    def __init__(
        self,
        shapes: dict[str, tuple],
        scalars: dict[str, str],
        passed: dict[str, str],
        channels: int = 0,
    ) -> None:
        self.shapes, self.scalars = shapes, scalars
        self.passed = passed  # array -> what the call passes (images as rows)
        self.channels = channels  # C where the rows are images' (m·C rows), else 0
        self.args: list[str] = []
        self.calls: list[str] = []
        self.count = 0
        self.rows: dict[str, str] = {}  # (m, 1) array -> the local of its row entry
        self.full: dict[str, str] = {}
        self.pre: list[str] = []  # lines before this pass's loop over j
        self.loads: list[str] = []  # lines in the loop, before the statement's
        self.consts = _Constants()

    def start_pass(self) -> None:
        self.full, self.pre, self.loads = {}, [], []

    def arg(self, name: str) -> str:
        if name not in self.args:
            self.args.append(name)
            self.calls.append(self.scalars.get(name, self.passed.get(name, name)))
        return name

    def fresh(self, prefix: str) -> str:
        """A new local: _t3 (an underscore: no array of the step is named so)."""
        self.count += 1
        return f"_{prefix}{self.count}"

    def load(self, name: str) -> str:
        """The local holding name's entry: a scalar argument, a value this pass or
        row has, or a new load (a row statistic before the loop, an entry in it)."""
        if name in self.scalars:
            return self.arg(name)
        if name in self.full:
            return self.full[name]
        if name in self.rows:
            return self.rows[name]
        shape = self.shapes[name]
        self.arg(name)
        v = self.fresh("v")
        if shape == ("m", 1) or (self.channels and len(shape) == 1):
            # a row statistic, or a per-channel vector: row i is channel i % C
            at = f"[i % {self.channels}]" if self.channels else "[i, 0]"
            self.pre.append(f"{v} = {name}{at}")
            self.rows[name] = v
            return v
        index = "[j]" if len(shape) == 1 else "[0, j]" if shape[0] == 1 else "[i, j]"
        self.loads.append(f"{v} = {name}{index}")
        self.full[name] = v
        return v


class Fuser:
    """Collects statements into kernels: `take`, `can_defer`/`defer` and `close`
    give the lines `_step` prints (the kernels' calls among them), `kernels` the
    source of the kernel functions.

    Args:
        shapes: array name -> shape ("m" the batch); the home arrays and parameters.
        scalars: symbol -> (the kernel's parameter, what the call passes): the step's
            scale as `scale[()]` (a 0-d work array), the batch size m.
        dot_lines: prints `np.dot(..., out=)` lines for a matrix product into an array.
    """

    def __init__(
        self,
        shapes: dict[str, tuple],
        scalars: dict[sp.Symbol, tuple[str, str]],
        dot_lines: Callable[[sp.Expr, str], list[str]],
    ) -> None:
        # an image (m, C, H, W) is m·C rows of H·W entries, shape (("m", C), H·W),
        # passed to a kernel as such a view of its memory (the step's arrays are dense)
        self.shapes = dict(shapes)
        self.passed: dict[str, str] = {}
        for name, shape in shapes.items():
            if len(shape) == 4 and shape[0] == "m":
                self.shapes[name] = (("m", shape[1]), shape[2] * shape[3])
                self.passed[name] = f"{name}.reshape(-1, {shape[2] * shape[3]})"
        self.scalars = scalars
        self.dot_lines = dot_lines
        self.kernels: list[str] = []
        self.passes: list[_Pass] = []
        self.width: int | None = None
        self.rows: object = "m"  # the open kernel's rows (_Item.rows)
        self.col_targets: set[str] = set()
        # matrix products that run after the open kernel (see defer): their lines,
        # and the arrays they read and write
        self.deferred: list[str] = []
        self.deferred_reads: set[str] = set()
        self.deferred_writes: set[str] = set()
        # the update's kernels: (rule, its arrays, rank) -> (name, scalar parameters)
        self.updates: dict[tuple, tuple[str, list[str]]] = {}
        # while a kernel is printed: its constants (numbers and scalar expressions as
        # locals of its dtype), and which symbols are scalars there
        self.typed: _Constants | None = None
        self.scalar: Callable[[sp.Symbol], bool] = lambda s: False

    # ------------------------------------------------------------------ intake

    def take(self, target: str, expr: sp.Expr) -> tuple[list[str], list[str]] | None:
        """Where `target = expr` joins a kernel, the lines to print before its comment
        (the call of a kernel it closes) and after (the matrix product of Z = A W + b);
        None where it does not (then print `close()` and the statement)."""
        item = self._item(target, expr)
        if item is None:
            return None
        fits = self._fits(item)
        if item.kind in ("row", "colred", "chansum") and (not self.passes or not fits):
            return None  # not worth a kernel of its own
        before = self.close() if item.dot or not fits else []
        after: list[str] = []
        if item.dot:
            product = next(t for t in expr.args if isinstance(t, PRODUCTS))
            after = self.dot_lines(product, target)
        self._add(item)
        return before, after

    def _item(self, target: str, expr: sp.Expr) -> _Item | None:
        item = self._classify(target, expr)
        if item is None or item.kind == "row":
            return item
        width = self._width_of(item)
        reads = [s for s in _reads(item.expr) if s not in self.scalars]
        if width is None or (
            item.rows == "m"
            and any(self.shapes[s.name][-1] not in (1, width) for s in reads)
        ):
            return None
        return item

    def _classify(self, target: str, expr: sp.Expr) -> _Item | None:
        shape = self.shapes.get(target)
        if shape is None or len(shape) != 2 and len(shape) != 1:
            return None
        try:
            if type(expr) in ROW and shape[1:] == (1,):
                self._check(expr.args[0], full=True)
                return _Item("rowred", target, expr.args[0], ROW[type(expr)])
            if type(expr) in COL and len(shape) == 1:
                self._check(expr.args[0], full=True)
                return _Item("colred", target, expr.args[0], COL[type(expr)])
            if _channel_sum(expr) and len(shape) == 1:  # Σ of an image per channel
                rows = self.shapes.get(expr.args[1].name, ((),))[0]
                if rows != ("m", shape[0]):
                    return None
                self._check(expr.args[1], full=True, rows=rows)
                return _Item("chansum", target, expr.args[1], "sum", rows=rows)
            if len(shape) != 2 or (shape[0] != "m" and not isinstance(shape[0], tuple)):
                return None
            if shape[1] == 1:
                self._check(expr, full=False)
                return _Item("row", target, expr)
            dot = ""
            if isinstance(expr, sp.Add):
                products = [t for t in expr.args if isinstance(t, PRODUCTS)]
                if len(products) == 1:
                    if sp.Symbol(target, real=True) in products[0].free_symbols:
                        return None  # the product reads the array it would go into
                    dot = target
            self._check(expr, full=True, dot=bool(dot), rows=shape[0])
            item = _Item("full", target, expr, dot=dot, rows=shape[0])
            if dot and sp.Symbol(target, real=True) in expr.free_symbols:
                return None  # the terms read what the product overwrites
            return item
        except Unsupported:
            return None

    def _check(
        self, e: sp.Expr, full: bool, dot: bool = False, rows: object = "m"
    ) -> None:
        """Raise Unsupported unless the scalar printer prints e, over arrays whose
        shapes broadcast (full: to (m, n); else: to (m, 1)); images' rows (rows
        ("m", C)): arrays of the same rows, and per-channel vectors (C,) broadcast."""
        # a printing with names for loads; dot "?": the product's array is not named yet
        self._code(e, lambda name: name, dot="" if not dot else "?")
        channel = {a.args[0] for a in e.atoms(Expanded)}
        for s in _reads(e):
            if s in self.scalars:
                continue
            shape = self.shapes.get(s.name)
            if shape is None:
                raise Unsupported(s.name)
            if rows != "m" or s in channel:  # images' rows: the same rows, or (C,)
                image = isinstance(rows, tuple)
                vector = image and s in channel and shape == (rows[1],)
                if not (image and (vector or shape[0] == rows)):
                    raise Unsupported(s.name)
                continue
            if full:
                ok = (
                    (len(shape) == 2 and shape[0] == "m")
                    or len(shape) == 1
                    or (len(shape) == 2 and shape[0] == 1)
                )
            else:
                ok = len(shape) == 2 and shape == ("m", 1)
            if not ok:
                raise Unsupported(s.name)

    def _width_of(self, item: _Item) -> int | None:
        if item.kind == "full":
            return self.shapes[item.target][1]
        if item.kind == "colred":
            return self.shapes[item.target][-1]
        if item.kind == "chansum":
            return self.shapes[item.expr.name][1]
        widths = {
            self.shapes[s.name][-1]
            for s in _reads(item.expr)
            if s not in self.scalars and self.shapes[s.name][-1] != 1
        }
        return widths.pop() if len(widths) == 1 else None

    def _fits(self, item: _Item) -> bool:
        """item may join the open kernel: the same width, no column result read or
        written again, and nothing a deferred product reads or writes."""
        if not self.passes:
            return True
        reads = {s.name for s in _reads(item.expr)}
        if reads & self.col_targets or item.target in self.col_targets:
            return False
        if item.target in self.deferred_reads | self.deferred_writes or (
            reads & self.deferred_writes
        ):
            return False  # a deferred product must see its inputs as they were
        if item.rows != self.rows:
            return False
        return item.kind == "row" or self._width_of(item) == self.width

    def can_defer(self, expr: sp.Expr, target: str) -> bool:
        """`target = expr`, a matrix product alone (∂L/∂W = Aᵀ δ), may run after the
        open kernel instead of closing it, so that the statements after it (the bias
        gradient Σₙ δ) still join: it writes nothing the kernel touches, and _fits
        keeps what joins later from writing what it reads or reading what it writes."""
        if not self.passes or not isinstance(expr, PRODUCTS):
            return False
        reads = {s.name for s in expr.free_symbols}
        return target not in self.touched() and target not in reads

    def defer(self, expr: sp.Expr, target: str, lines: list[str]) -> None:
        """Print lines (those of `target = expr`) after the open kernel's call."""
        self.deferred += lines
        self.deferred_reads |= {s.name for s in expr.free_symbols}
        self.deferred_writes.add(target)

    def touched(self) -> set[str]:
        """The arrays the open kernel reads or writes."""
        return {
            n
            for p in self.passes
            for it in p.items + p.post
            for n in [it.target, it.dot] + [s.name for s in _reads(it.expr)]
            if n
        }

    def _add(self, item: _Item) -> None:
        if not self.passes:
            self.passes.append(_Pass())
            self.width, self.rows = self._width_of(item), item.rows
        current = self.passes[-1]
        if item.kind == "row":
            current.post.append(item)
            return
        pending = {i.target for i in current.post}
        if {s.name for s in _reads(item.expr)} & pending:
            self.passes.append(_Pass())  # reads a row statistic of this pass
            current = self.passes[-1]
        if item.kind in ("colred", "chansum"):
            self.col_targets.add(item.target)
        current.items.append(item)
        if item.kind in ("rowred", "chansum"):  # accumulated in the pass, stored after
            current.post.append(item)

    # ------------------------------------------------------------------ output

    def close(self) -> list[str]:
        """The call of the open kernel (and its source into `kernels`); [] if none."""
        if not self.passes:
            return []
        name = f"_k{len(self.kernels) + 1}"
        source, args = self._kernel(name)
        self.kernels.append(source)
        self.passes, self.width, self.col_targets = [], None, set()
        self.rows = "m"
        deferred, self.deferred = self.deferred, []
        self.deferred_reads, self.deferred_writes = set(), set()
        return [f"{name}({', '.join(args)})", *deferred]

    def _kernel(self, name: str) -> tuple[str, list[str]]:
        """The source of the open kernel, named `name`, and its call's arguments."""
        channels = self.rows[1] if isinstance(self.rows, tuple) else 0
        w = _Writer(self.shapes, dict(self.scalars.values()), self.passed, channels)
        self.typed, self.scalar = w.consts, lambda s: s in self.scalars
        rows_of = next(  # an array of the kernel's rows that it reads or writes
            n
            for p in self.passes
            for it in p.items + p.post
            for n in [it.target] + sorted(s.name for s in _reads(it.expr))
            if n in self.shapes and self.shapes[n][0] == self.rows
        )
        body: list[str] = []
        first: list[str] = []  # before the row loop: the column accumulators
        last: list[str] = []  # after it: column means
        for p in self.passes:
            w.start_pass()
            loop: list[str] = []
            stores: dict[str, str] = {}
            accs: dict[str, str] = {}
            for it in p.items:
                text = self._code(it.expr, w.load, dot=it.dot)
                loop += w.loads
                w.loads = []
                v = w.fresh("t")
                loop.append(f"{v} = {text}")
                if it.kind == "full":
                    w.full[it.target] = stores[it.target] = v
                    w.arg(it.target)
                elif it.kind in ("rowred", "chansum"):
                    acc = accs[it.target] = w.fresh("acc")
                    start = "-np.inf" if it.op == "max" else w.consts("0.0")
                    w.pre.append(f"{acc} = {start}")
                    loop.append(_accumulate(acc, v, it.op))
                    if it.kind == "chansum":  # the rows' sums added per channel
                        first.append(f"{w.arg(it.target)}[:] = 0.0")
                else:  # a column reduction, over the rows
                    t = w.arg(it.target)
                    entry = t + ("[j]" if len(self.shapes[t]) == 1 else "[0, j]")
                    first.append(
                        f"{t}[:] = " + ("-np.inf" if it.op == "max" else "0.0")
                    )
                    loop.append(_accumulate(entry, v, it.op))
                    if it.op == "mean":
                        last.append(f"{t}[:] /= {rows_of}.shape[0]")
            loop += [f"{t}[i, j] = {v}" for t, v in stores.items()]
            post: list[str] = []
            for it in p.post:
                if it.kind == "chansum":
                    post.append(f"{it.target}[i % {channels}] += {accs[it.target]}")
                    continue
                if it.kind == "rowred":
                    acc = accs[it.target]
                    width = w.consts(repr(float(self.width)))
                    value = f"{acc} / {width}" if it.op == "mean" else acc
                else:
                    value = self._code(it.expr, w.load)
                v = w.fresh("r")
                post += [f"{v} = {value}", f"{w.arg(it.target)}[i, 0] = {v}"]
                w.rows[it.target] = v
            body += w.pre
            if loop:
                body.append(f"for j in range({self.width}):")
                body += [INDENT + line for line in loop]
            body += post
        self.typed = None
        lines = [DECORATOR, f"def {name}({', '.join(w.args)}):"]
        lines += [INDENT + line for line in w.consts.lines(rows_of) + first]
        lines.append(f"{INDENT}for i in range({rows_of}.shape[0]):")
        lines += [2 * INDENT + line for line in body]
        lines += [INDENT + line for line in last]
        return "\n".join(lines), w.calls

    # ------------------------------------------------------------------ the update

    def update(
        self, rule: Sequence[tuple[sp.Symbol, sp.Expr]], arrays: dict[sp.Symbol, str]
    ) -> str | None:
        """The call of a kernel that applies an optimizer's rule (`target ← expr`
        statements, in order) to one parameter, entry by entry in one pass: `arrays`
        maps the rule's array symbols (the parameter first, its gradient, its state) to
        what the call passes; every other symbol is a scalar, passed by its name. A
        statement's value is what later statements read; each array written is stored
        once, after the last. The arrays are walked through `.flat` (whatever their
        rank and layout: in memory order where C-contiguous, as NumPy's `p -= g`; a
        loop per dimension ran 5.6× slower than NumPy on a conv kernel's 3 × 3
        entries). One kernel per rule, shared by the parameters that call it. None
        where the scalar printer does not print a statement: print the NumPy lines."""
        key = (tuple(rule), tuple(arrays))
        if key not in self.updates:
            made = self._update_kernel(rule, [s.name for s in arrays])
            if made is None:
                return None
            self.updates[key] = made
        name, scalars = self.updates[key]
        return f"{name}({', '.join([*arrays.values(), *scalars])})"

    def _update_kernel(
        self, rule: Sequence[tuple[sp.Symbol, sp.Expr]], names: list[str]
    ) -> tuple[str, list[str]] | None:
        """(name, its scalar parameters) of a new update kernel, its source added to
        `kernels`; None where a statement is not printable in a kernel."""
        if any(t.name not in names for t, _ in rule):
            return None
        values: dict[str, str] = {}  # array -> the local holding its entry
        flat: dict[str, str] = {}  # array -> its `.flat`, in order of first use
        body: list[str] = []
        scalars: list[str] = []
        count = itertools.count(1)
        typed = _Constants()  # the numbers and the scalars, of the parameter's dtype

        def walk(name: str) -> str:
            """The local holding name's flat iterator."""
            if name not in flat:
                flat[name] = f"_f{len(flat) + 1}"
            return flat[name]

        def load(name: str) -> str:
            if name in values:
                return values[name]
            if name not in names:  # a scalar: the kernel's parameter of that name
                if name not in scalars:
                    scalars.append(name)
                return name
            v = values[name] = f"_v{next(count)}"
            body.append(f"{v} = {walk(name)}[_i]")
            return v

        stores: dict[str, str] = {}
        for target, expr in rule:
            self.typed, self.scalar = typed, lambda s: s.name not in names
            try:
                text = self._code(numeric(expr), load)
            except Unsupported:
                return None
            finally:
                self.typed = None
            v = stores[target.name] = values[target.name] = f"_t{next(count)}"
            body.append(f"{v} = {text}")
        body += [f"{walk(t)}[_i] = {v}" for t, v in stores.items()]
        name = f"_k{len(self.kernels) + 1}"
        lines = [DECORATOR, f"def {name}({', '.join(names + scalars)}):"]
        lines += [INDENT + line for line in typed.lines(names[0])]
        lines += [f"{INDENT}{f} = {a}.flat" for a, f in flat.items()]
        lines.append(f"{INDENT}for _i in range({names[0]}.size):")
        lines += [2 * INDENT + line for line in body]
        self.kernels.append("\n".join(lines))
        return name, scalars

    # ------------------------------------------------------------------ scalars

    def _code(self, e: sp.Expr, load: Callable[[str], str], dot: str = "") -> str:
        """e as a scalar expression in a kernel; arrays through load(name)."""
        return self._prec(e, load, dot)[0]

    def _arg(self, e: sp.Expr, load, dot: str, bound: int) -> str:
        """e's text as an operand that binds at least as tightly as `bound`."""
        text, prec = self._prec(e, load, dot)
        return f"({text})" if prec > bound else text

    def _prec(self, e: sp.Expr, load, dot: str) -> tuple[str, int]:
        """(text, precedence): ATOM, POW, MUL, ADD or COND (loosest)."""
        if isinstance(e, PRODUCTS):
            if not dot:
                raise Unsupported("a matrix product")
            return (load(dot) if dot != "?" else "0.0"), ATOM
        if self.typed is not None and isinstance(e, sp.Expr):
            if all(self.scalar(s) for s in e.free_symbols):
                # a number or an expression of scalars: computed once, in float64,
                # before the loops, as a local of the kernel's dtype
                typed, self.typed = self.typed, None
                try:
                    return typed(self._code(e, load, dot)), ATOM
                finally:
                    self.typed = typed
        if isinstance(e, Expanded):  # a per-channel vector over images' rows
            if e.args[1].name != CHANNEL:
                raise Unsupported(f"{e}: not a per-channel vector")
            return self._prec(e.args[0], load, dot)
        if e.is_Symbol:
            return load(self.scalars[e][0] if e in self.scalars else e.name), ATOM
        if e is sp.S.NaN or e in (sp.S.Infinity, sp.S.NegativeInfinity):
            text = {"nan": "np.nan", "oo": "np.inf", "-oo": "-np.inf"}[str(e)]
            return text, ATOM if not text.startswith("-") else ADD
        if e.is_Number:
            if not (e.is_Rational or e.is_Float):
                raise Unsupported(str(e))
            return repr(float(e)), ATOM if e >= 0 else ADD
        if isinstance(e, sp.Add):
            out = ""
            for k, term in enumerate(e.args):
                negative, rest = _negated(term)
                if negative:
                    out += (" - " if k else "-") + self._arg(rest, load, dot, MUL)
                else:
                    out += (" + " if k else "") + self._arg(term, load, dot, ADD)
            return out, ADD
        if isinstance(e, sp.Mul):
            negative, rest = _negated(e)
            if negative:
                return "-" + self._arg(rest, load, dot, POW), ADD
            num, den = [], []
            for a in sp.Mul.make_args(e):
                if isinstance(a, sp.Pow) and a.exp.is_Integer and a.exp < 0:
                    den.append(self._power(a.base, -a.exp, load, dot, den=True))
                else:
                    num.append(self._arg(a, load, dot, MUL))
            text = " * ".join(num) if num else "1.0"
            for d in den:
                text += f" / {d}"
            return text, MUL
        if isinstance(e, sp.Pow):
            if e.exp.is_Integer and e.exp < 0:
                return "1.0 / " + self._power(e.base, -e.exp, load, dot, den=True), MUL
            if e.exp == sp.S.Half:
                return f"np.sqrt({self._code(e.base, load, dot)})", ATOM
            if e.exp == -sp.S.Half:
                return f"1.0 / np.sqrt({self._code(e.base, load, dot)})", MUL
            if e.exp.is_Integer:
                return self._power(e.base, e.exp, load, dot), MUL
            raise Unsupported(f"{e}: a fractional power is libm's pow in a kernel")
        if isinstance(e, sp.Piecewise):
            *pieces, (last, always) = e.args
            if always is not sp.true:
                raise Unsupported(str(e))
            out = self._arg(last, load, dot, COND)
            for value, cond in reversed(pieces):
                v = self._arg(value, load, dot, ADD)
                c = self._arg(cond, load, dot, ADD)
                out = f"{v} if {c} else {out}"
            return out, COND
        if isinstance(e, sp.Rel) and e.rel_op in RELATIONS:
            a, b = (self._arg(x, load, dot, ADD) for x in e.args)
            return f"{a} {e.rel_op} {b}", REL
        if isinstance(e, sp.Max | sp.Min) and len(e.args) == 2:
            f = "np.maximum" if isinstance(e, sp.Max) else "np.minimum"
            a, b = (self._code(x, load, dot) for x in e.args)
            return f"{f}({a}, {b})", ATOM
        if isinstance(e, sigmoid | softplus) or type(e) in TRANSCENDENTAL:
            raise Unsupported(f"{type(e).__name__}: NumPy's SIMD ufunc is faster")
        if type(e) in FUNCTIONS:  # NumPy's ufuncs, as the NumPy module calls them
            args = ", ".join(self._code(a, load, dot) for a in e.args)
            return f"np.{FUNCTIONS[type(e)]}({args})", ATOM
        raise Unsupported(type(e).__name__)

    def _power(self, base: sp.Expr, k, load, dot: str, den: bool = False) -> str:
        """base**k for an integer k ≥ 1: a product for k ≤ 3 (parenthesized as a
        denominator)."""
        b = self._arg(base, load, dot, ATOM if int(k) > 1 or den else MUL)
        if int(k) == 1:
            return b
        text = " * ".join([b] * int(k)) if int(k) <= 3 else f"{b} ** {int(k)}"
        return f"({text})" if den else text
