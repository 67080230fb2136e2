"""In-place NumPy code for the lean training step: a SymPy expression -> ufunc calls with out=.

`loss_and_grad` prints each derived expression as one NumPy expression, so every operation
in it allocates a fresh array. The step evaluates the same expressions into arrays made
once per batch size instead: `Emitter.into(expr, dest)` walks the expression and writes one
NumPy call per node, each with `out=`; 1 - a² into T2 becomes

    np.square(A2, out=T2)
    np.subtract(1, T2, out=T2)

Recognised nodes: sums, products and quotients, constant powers, the unary ufuncs (exp,
log, tanh, ...), sigmoid and softplus, max/min, comparisons (a 0/1 mask written straight
into a float array) and two-piece rules with constant values (relu', leaky_relu'). Any
other node — np.where with expressions in its branches, _erf, boolean logic — falls back to
`dest[...] = <the printed node>`: correct for every expression the derivation produces,
only not allocation-free. The operations are those of the printed form; only the grouping
of an n-ary sum or product may differ, so results agree to rounding.

Scratch arrays come from a `Scratch` pool per layer width (T2, U2, ...); the caller makes
the ones a step used. `owner` names an input whose array is also `dest` (A1 = tanh(A1) in
place): it must occur at most once, and it is read before dest is first written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import sympy as sp

from .. import naming as nm
from ..arrays import KeepMask, MatProduct, ReductionBase, Transposed
from ..derive import LS, ActivationRule, Derivation
from ..functions import numeric, sigmoid, softplus
from ..naming import BATCH, ONES_BATCH, ones_row
from ..ops import a, y, z
from .code import DTYPE, NumPyCode, number_text

EXP_MAX = sp.Symbol("EXP_MAX")  # key of `constants`: log of the largest float, floored
UFUNCS: dict[type, str] = {
    sp.exp: "exp",
    sp.log: "log",
    sp.tanh: "tanh",
    sp.sinh: "sinh",
    sp.cosh: "cosh",
    sp.sin: "sin",
    sp.cos: "cos",
    sp.atan: "arctan",
    sp.Abs: "abs",
    sp.sign: "sign",
}
COMPARE = {
    "<": "less",
    "<=": "less_equal",
    ">": "greater",
    ">=": "greater_equal",
    "==": "equal",
    "!=": "not_equal",
}
AUGMENTED = {"add": "+=", "subtract": "-=", "multiply": "*=", "divide": "/="}
INVERSE = {"add": "subtract", "multiply": "divide"}


def array(name: str) -> sp.Symbol:
    """The symbol that stands for the array `name` in an expression."""
    return sp.Symbol(name, real=True)


@dataclass
class Scratch:
    """Scratch arrays of one shape: tmp2, tmp2_2, ... for layer 2, taken and given back."""

    layer: int | str
    free: list[str] = field(default_factory=list)
    made: list[str] = field(default_factory=list)
    new: bool = True  # may make new arrays (False: only what is given back)

    @property
    def spare(self) -> bool:
        """An array can be taken now."""
        return bool(self.free) or self.new

    def take(self) -> str:
        if self.free:
            return self.free.pop()
        if not self.new:
            raise ValueError("no scratch array to spare here")  # the caller's bug
        name = f"tmp{self.layer}" + (f"_{len(self.made) + 1}" if self.made else "")
        self.made.append(name)
        return name

    def give(self, name: str) -> None:
        self.free.append(name)


def _count(e: sp.Expr, s: sp.Symbol) -> int:
    """How often the symbol s occurs in e."""
    if e == s:
        return 1
    return sum(_count(arg, s) for arg in e.args)


class _OwnerOverwritten(Exception):
    """An expression would read its owner after the owner's array was overwritten."""


def _common_factor(e: sp.Piecewise) -> sp.Expr | None:
    """u·{c0 if cond; else c1} for {c0·u if cond; else c1·u} (leaky ReLU), else None."""
    coeffs, rests = zip(*(value.as_coeff_Mul() for value, _ in e.args), strict=True)
    if len(set(rests)) != 1 or not rests[0].free_symbols:
        return None
    pieces = [(c, cond) for c, (_, cond) in zip(coeffs, e.args, strict=True)]
    return sp.Mul(rests[0], sp.Piecewise(*pieces), evaluate=False)


class Emitter:
    """Writes in-place NumPy lines for expressions over named arrays and Python scalars.

    Args:
        printer: prints constants and fallback nodes; its `helpers` collects what the
            lines call (`_sigmoid`, `dt`).
        scalars: symbols that are Python numbers at run time (`scale`): folded with
            constants, never arrays.
        constants: names of typed 0-d arrays to use for these numbers as operands (a
            ufunc with a typed array operand skips the conversion of a Python scalar,
            which costs as much as a small ufunc); EXP_MAX names log(max float), floored,
            which the sigmoid needs; without it sigmoid calls the module's _sigmoid.
    """

    def __init__(
        self,
        printer: NumPyCode,
        scalars: Iterable[sp.Symbol] = (),
        constants: dict[sp.Expr, str] | None = None,
    ) -> None:
        self.printer = printer
        self.scalars = set(scalars)
        self.constants = dict(constants or {})
        self.used: set[str] = set()  # the named constants the lines read
        self.lines: list[str] = []
        self.pool: Scratch = Scratch("")
        self.owner: sp.Symbol | None = None
        self.written = False  # the owner's array has been written
        self.donors: dict[sp.Symbol, int] = {}  # arrays free once read: occurrences
        self.shapes: dict[str, tuple] = {}  # array name -> shape (for reductions)
        self.ones_rows: set[int] = set()  # widths n of the (n, 1) ones the lines read
        self.top: sp.Expr = sp.S.Zero  # the expression of the current into()
        # scratch pools by shape, for operands whose shape is not the statement's
        self.pool_for: Callable[[tuple], Scratch] | None = None

    # -------------------------------------------------------------- entry points

    def into(
        self,
        expr: sp.Expr,
        dest: str,
        pool: Scratch,
        owner: sp.Symbol | None = None,
        donors: Iterable[sp.Symbol] = (),
    ) -> list[str] | None:
        """Lines that leave the value of expr in the array dest.

        With an owner (an input whose array is dest), None when no order of the lines
        reads the owner before its array is first written: evaluate elsewhere then.
        Donors are inputs not read after this statement: one that occurs once holds
        the subexpression around it (it is read before it is written); one that does
        not occur at all is scratch.
        """
        self.lines, self.pool, self.owner, self.written = [], pool, owner, False
        self.top = numeric(expr)
        counts = {d: _count(self.top, d) for d in donors}
        self.donors = {d: n for d, n in counts.items() if n == 1}
        for d, n in counts.items():
            if n == 0 and d.name not in pool.free:
                pool.give(d.name)
        try:
            self._into(self.top, dest)
        except _OwnerOverwritten:
            for name in pool.made:
                if name not in pool.free:
                    pool.give(name)
            return None
        return self.lines

    def total(self, expr: sp.Expr, pool: Scratch, target: str, size: str) -> list[str]:
        """Lines that set `target` to the sum of expr over all entries (a NumPy scalar).

        A sum of products is summed term by term: c·u·v as c·np.vdot(u, v), c·u² as
        c·np.vdot(u, u), c·u as c·u.sum() and a constant c as c·size, with u and v
        evaluated into scratch arrays where they are not plain arrays.
        """
        self.lines, self.pool, self.owner, self.written = [], pool, None, False
        for i, term in enumerate(sp.Add.make_args(numeric(expr))):
            coeff, arrays = self._split_scalar(term)
            taken: list[str] = []
            if not arrays:
                value = size
            elif len(arrays) == 1 and arrays[0].is_Pow and arrays[0].exp == 2:
                u = self._operand(arrays[0].base, taken)
                value = f"np.vdot({u}, {u})"
            elif len(arrays) == 1:
                value = f"{self._operand(arrays[0], taken)}.sum()"
            else:
                u = self._operand(sp.Mul(*arrays[:-1]), taken)
                v = self._operand(arrays[-1], taken)
                value = f"np.vdot({u}, {v})"
            for name in taken:
                self.pool.give(name)
            if coeff == -1:
                value = f"-{value}"
            elif coeff != 1:
                value = f"{self._scalar_text(coeff, grouped=True)} * {value}"
            self.lines.append(f"{target} {'+=' if i else '='} {value}")
        return self.lines

    # -------------------------------------------------------------- helpers

    def _is_scalar(self, e: sp.Expr) -> bool:
        return not (e.free_symbols - self.scalars)

    def _is_atom(self, e: sp.Expr) -> bool:
        return e.is_Symbol or self._is_scalar(e)

    def _scalar_text(self, e: sp.Expr, grouped: bool = False) -> str:
        """A scalar operand; `grouped` parenthesizes a sum (for use inside a product)."""
        if e.is_Symbol:
            return e.name
        if not e.free_symbols:
            return number_text(e)
        # Python numbers: a square root as ** 0.5 (np.sqrt would make a NumPy scalar)
        e = e.replace(
            lambda n: n.is_Pow and n.exp == sp.S.Half,
            lambda n: sp.Pow(n.base, sp.Float(0.5), evaluate=False),
        )
        text = self.printer.doprint(e)
        return f"({text})" if grouped and e.is_Add else text

    def _text(self, e: sp.Expr) -> str:
        if e == self.owner and self.written:
            raise _OwnerOverwritten
        if e in self.constants:
            self.used.add(self.constants[e])
            return self.constants[e]
        return e.name if e.is_Symbol else self._scalar_text(e)

    def _line(self, line: str, dest: str) -> None:
        self.lines.append(line)
        if self.owner is not None and dest == self.owner.name:
            self.written = True

    def _split_scalar(self, term: sp.Expr) -> tuple[sp.Expr, list[sp.Expr]]:
        """term = scalar · Π arrays."""
        factors = sp.Mul.make_args(term)
        scalar = sp.Mul(*[f for f in factors if self._is_scalar(f)])
        return scalar, [f for f in factors if not self._is_scalar(f)]

    def _has_owner(self, e: sp.Expr) -> bool:
        return self.owner is not None and e.has(self.owner)

    def _emit(self, ufunc: str, args: list[str], dest: str) -> None:
        if len(args) == 2 and args[0] == dest and ufunc in AUGMENTED:
            self._line(f"{dest} {AUGMENTED[ufunc]} {args[1]}", dest)
        else:
            self._line(f"np.{ufunc}({', '.join(args)}, out={dest})", dest)

    def _operand(self, e: sp.Expr, taken: list[str]) -> str:
        """e as an argument: its own name or number, else evaluated into a scratch array
        (a donor's, when e holds the donor's one occurrence)."""
        if self._is_atom(e):
            return self._text(e)
        if isinstance(e, ReductionBase | MatProduct):
            # its shape is not the pool's: the plan gives such a node its own statement
            raise ValueError(f"{type(e).__name__} inside an expression: {e}")
        donor = next((d for d in self.donors if e.has(d)), None)
        if donor is not None:
            del self.donors[donor]
            outer = self.owner, self.written
            self.owner, self.written = donor, False
            self._into(e, donor.name)
            self.owner, self.written = outer
            taken.append(donor.name)  # free again once the operand has been used
            return donor.name
        name = self.pool.take()
        taken.append(name)
        self._into(e, name)
        return name

    # -------------------------------------------------------------- nodes

    def _into(self, e: sp.Expr, dest: str) -> None:
        if e.is_Symbol and not self._is_scalar(e):
            if e.name != dest:
                self._line(f"np.copyto({dest}, {self._text(e)})", dest)
        elif self._is_scalar(e):
            self._line(f"{dest}.fill({self._scalar_text(e)})", dest)
        elif isinstance(e, KeepMask):
            self._keep(e, dest)
        elif isinstance(e, MatProduct):
            left, right = (self._matrix(x) for x in e.args)
            self._line(f"np.dot({left}, {right}, out={dest})", dest)
        elif isinstance(e, ReductionBase) and e.axis is not None:
            if e is not self.top:  # its shape is not dest's
                raise ValueError(f"{type(e).__name__} inside an expression: {e}")
            self._reduce(e, dest)
        elif e.is_Add:
            items = [
                (True, -t) if t.could_extract_minus_sign() else (False, t)
                for t in e.args
            ]
            self._fold("add", items, dest)
        elif e.is_Mul:
            self._mul(e, dest)
        elif e.is_Pow:
            self._pow(e, dest)
        elif type(e) in UFUNCS:
            self._unary(UFUNCS[type(e)], e.args[0], dest)
        elif isinstance(e, sigmoid) and EXP_MAX in self.constants:
            # 1 / (1 + e^-x): full relative precision; capping -x where e^-x would
            # overflow changes only results below the smallest normal number
            x = self._first(e.args[0], dest)
            self._emit("negative", [x], dest)
            self._emit("minimum", [dest, self._text(EXP_MAX)], dest)
            self._emit("exp", [dest], dest)
            self._emit("add", [dest, self._text(sp.S.One)], dest)
            self._emit("reciprocal", [dest], dest)
        elif isinstance(e, sigmoid):
            self.printer.helpers.add("_sigmoid")
            x = self._first(e.args[0], dest)
            self._line(f"_sigmoid({x}, out={dest})", dest)
        elif isinstance(e, softplus):  # log(1 + e^x), as np.logaddexp(0, x)
            x = self._first(e.args[0], dest)
            self._emit("logaddexp", [self._text(sp.S.Zero), x], dest)
        elif isinstance(e, sp.Max | sp.Min) and len(e.args) == 2:
            args = sorted(e.args, key=self._is_scalar)  # the array first, as printed
            self._binary("maximum" if isinstance(e, sp.Max) else "minimum", *args, dest)
        elif e.is_Relational and e.rel_op in COMPARE:
            self._binary(COMPARE[e.rel_op], e.lhs, e.rhs, dest)  # 0/1 in a float array
        elif isinstance(e, sp.Piecewise) and self._two_constants(e):
            self._mask(e, dest)
        elif isinstance(e, sp.Piecewise) and _common_factor(e) is not None:
            self._into(_common_factor(e), dest)  # {c0 u if ...; else c1 u} = u {c0; c1}
        else:
            if self._has_owner(e) and self.written:
                raise _OwnerOverwritten
            self._line(f"{dest}[...] = {self.printer.doprint(e)}", dest)

    def _shape(self, e: sp.Expr) -> tuple:
        """The broadcast shape of the arrays e reads."""
        shapes = [self.shapes[s.name] for s in e.free_symbols if s.name in self.shapes]
        rank = max((len(s) for s in shapes), default=0)
        out = []
        for k in range(rank):
            dims = {s[k - rank + len(s)] for s in shapes if k - rank + len(s) >= 0}
            dims.discard(1)
            out.append(dims.pop() if dims else 1)
        return tuple(out)

    def _keep(self, e: KeepMask, dest: str) -> None:
        """Inverted dropout's mask: uniforms, compared with the rate, scaled."""
        rate = float(e.args[1])
        # the uniforms in the params' dtype, as _keep_mask draws them (float32 too)
        self._line(f"rng.random(dtype={dest}.dtype, out={dest})", dest)
        self._emit("greater_equal", [dest, number_text(e.args[1])], dest)
        self._emit("multiply", [dest, number_text(sp.Float(1 / (1 - rate)))], dest)

    def _matrix(self, e: sp.Expr) -> str:
        """An operand of a matrix product: an array, or an array's transpose."""
        if isinstance(e, Transposed) and e.args[0].is_Symbol:
            return f"{self._text(e.args[0])}.T"
        if e.is_Symbol:
            return self._text(e)
        raise ValueError(f"a matrix product of expressions: {e}")  # the plan's bug

    def _reduce(self, e: ReductionBase, dest: str) -> None:
        """A row or column reduction; sums as products with ones (faster than sum)."""
        taken: list[str] = []
        arg = e.args[0]
        pool = self.pool
        if not self._is_atom(arg) and self.pool_for is not None:
            self.pool = self.pool_for(
                self._shape(arg)
            )  # scratch of the operand's shape
        x = self._operand(arg, taken)
        for name in taken:
            self.pool.give(name)
        self.pool, taken = pool, []
        width = max(  # the row width: the widest array the operand reads
            self.shapes[s.name][-1]
            for s in e.args[0].free_symbols
            if len(self.shapes.get(s.name, ())) == 2
        )
        if e.op == "max":
            self._line(
                f"np.maximum.reduce({x}, axis={e.axis}, keepdims={e.keepdims},"
                f" out={dest})",
                dest,
            )
        elif e.axis == 1:
            self.ones_rows.add(int(width))
            self._line(f"np.dot({x}, {ones_row(int(width))}, out={dest})", dest)
        else:
            self._line(f"np.dot({ONES_BATCH}, {x}, out={dest})", dest)
        if e.op == "mean":
            count = sp.Integer(int(width)) if e.axis == 1 else sp.Symbol(BATCH)
            self._emit("divide", [dest, self._scalar_text(count)], dest)
        for name in taken:
            self.pool.give(name)

    def _first(self, e: sp.Expr, dest: str) -> str:
        """The only operand of a unary node: evaluated into dest unless an atom."""
        if self._is_atom(e):
            return self._text(e)
        self._into(e, dest)
        return dest

    def _unary(self, ufunc: str, x: sp.Expr, dest: str) -> None:
        self._emit(ufunc, [self._first(x, dest)], dest)

    def _binary(self, ufunc: str, x: sp.Expr, y: sp.Expr, dest: str) -> None:
        # one compound operand goes to dest (the one holding the owner, if any), any
        # other one first to a scratch array; plain operands are read last, so that a
        # read of the owner after its array was written is caught
        taken: list[str] = []
        compound = [e for e in (x, y) if not self._is_atom(e)]
        first = next((e for e in compound if self._has_owner(e)), None)
        if first is None and compound and self.owner not in (x, y):
            first = compound[0]
        texts: list[str | None] = [
            None if e is first or self._is_atom(e) else self._operand(e, taken)
            for e in (x, y)
        ]
        if first is not None:
            self._into(first, dest)
        texts = [
            t if t is not None else dest if e is first else self._text(e)
            for t, e in zip(texts, (x, y), strict=True)
        ]
        self._emit(ufunc, texts, dest)
        for name in taken:
            self.pool.give(name)

    def _mul(self, e: sp.Mul, dest: str) -> None:
        items = []
        for f in e.args:
            if f.is_Pow and f.exp.is_Number and f.exp.is_negative:
                items.append((True, sp.Pow(f.base, -f.exp)))
            else:
                items.append((False, f))
        self._fold("multiply", items, dest)

    def _fold(self, op: str, items: list[tuple[bool, sp.Expr]], dest: str) -> None:
        """dest = items combined with op (add, multiply); an inverted item is subtracted
        or divided. Scalars are merged into one item, applied last."""
        identity = sp.S.Zero if op == "add" else sp.S.One
        scalar, arrays = identity, []
        for inv, t in items:
            if self._is_scalar(t):
                if op == "add":
                    scalar += -t if inv else t
                else:
                    scalar *= 1 / t if inv else t
            else:
                arrays.append((inv, t))
        negate = False
        if op == "multiply" and scalar == -1:
            scalar, negate = sp.S.One, True
        rest = list(arrays)
        if scalar != identity:
            if op == "add" and scalar.could_extract_minus_sign():
                rest.append((True, -scalar))
            else:
                rest.append((False, scalar))
        # the first item: the one holding the owner, else a compound one, else an array
        start = next((it for it in arrays if self._has_owner(it[1])), None)
        if start is None:  # a matrix product can only be written into dest itself
            start = next((it for it in arrays if it[1].has(MatProduct)), None)
        if start is None:
            start = next((it for it in arrays if not self._is_atom(it[1])), arrays[0])
        rest.remove(start)
        if self._axpy(op, start, rest, dest):
            return
        inverse = INVERSE[op]
        taken: list[str] = []
        if not rest and self._is_atom(start[1]):  # -a or 1/a: one array and a sign
            src = self._text(start[1])
            unary = ["negative" if op == "add" else "reciprocal"] if start[0] else []
            unary += ["negative"] if negate else []
            if not unary:
                self.lines.append(f"np.copyto({dest}, {src})")
            for ufunc in unary:
                self._emit(ufunc, [src], dest)
                src = dest
            return
        if not self._is_atom(start[1]):
            self._into(start[1], dest)
            flipped = start[0]  # dest holds the item; the running value is its inverse
        else:
            inv2, e2 = rest.pop(0)
            a, b = self._text(start[1]), self._operand(e2, taken)
            if start[0] == inv2:
                self._emit(op, [a, b], dest)
                flipped = start[0]
            elif inv2:
                self._emit(inverse, [a, b], dest)
                flipped = False
            else:
                self._emit(inverse, [b, a], dest)
                flipped = False
        for inv, t in rest:
            b = self._operand(t, taken)
            if not flipped:
                self._emit(inverse if inv else op, [dest, b], dest)
            elif inv:  # running value -dest (1/dest): minus b is -(dest + b)
                self._emit(op, [dest, b], dest)
            else:  # plus b is b - dest
                self._emit(inverse, [b, dest], dest)
                flipped = False
        for name in taken:
            self.pool.give(name)
        if flipped:
            self._emit("negative" if op == "add" else "reciprocal", [dest], dest)
        if negate:
            self._emit("negative", [dest], dest)

    def _axpy(
        self,
        op: str,
        start: tuple[bool, sp.Expr],
        rest: list[tuple[bool, sp.Expr]],
        dest: str,
    ) -> bool:
        """c1·u + c2·x with no scratch array: dest = c2·((c1/c2)·u + x), three passes.

        Only where the pool has no array to spare (the optimizer's update, where arrays
        have every parameter's shape): elsewhere c2·x goes to scratch, one pass fewer.
        """
        if (
            op != "add"
            or self.pool.spare
            or len(rest) != 1
            or self._is_atom(rest[0][1])
        ):
            return False  # scratch to spare, or none needed
        (inv1, u), (inv2, x) = start, rest[0]
        c1, us = self._split_scalar(u)
        c2, xs = self._split_scalar(x)
        if len(us) != 1 or len(xs) != 1 or not self._is_atom(xs[0]):
            return False
        c1, c2 = (-c1 if inv1 else c1), (-c2 if inv2 else c2)
        self._into(us[0], dest)
        ratio = c1 / c2
        if ratio != 1:
            self._emit("multiply", [dest, self._scalar_text(ratio)], dest)
        self._emit("add", [dest, self._text(xs[0])], dest)
        if c2 != 1:
            self._emit("multiply", [dest, self._scalar_text(c2)], dest)
        return True

    def _pow(self, e: sp.Pow, dest: str) -> None:
        base, exp = e.args
        if not exp.is_Number:
            self._binary("power", base, exp, dest)
        elif exp == 2:
            self._unary("square", base, dest)
        elif exp == sp.S.Half:
            self._unary("sqrt", base, dest)
        elif exp == -1:
            self._unary("reciprocal", base, dest)
        elif exp.is_negative:
            self._into(sp.Pow(base, -exp), dest)
            self._emit("reciprocal", [dest], dest)
        else:
            self._binary("power", base, exp, dest)

    def _two_constants(self, e: sp.Piecewise) -> bool:
        """{c0 if condition; else c1} with constant c0, c1 and a comparison."""
        if len(e.args) != 2 or e.args[1][1] is not sp.true:
            return False
        (c0, cond), (c1, _) = e.args
        return (
            self._is_scalar(c0)
            and self._is_scalar(c1)
            and cond.is_Relational
            and cond.rel_op in COMPARE
        )

    def _mask(self, e: sp.Piecewise, dest: str) -> None:
        (c0, cond), (c1, _) = e.args
        if c0 == 0 and c1 == 1:
            cond, c0, c1 = cond.negated, sp.S.One, sp.S.Zero
        self._into(cond, dest)  # 1 where the condition holds, else 0
        if c0 - c1 != 1:
            self._emit("multiply", [dest, self._text(c0 - c1)], dest)
        if c1 != 0:
            self._emit("add", [dest, self._text(c1)], dest)


# ------------------------------------------------------------------ the step


SCALE = array("scale")  # what δ is scaled by: η/m for sgd, else 1/m
CONSTANTS = {  # typed 0-d arrays in the work arrays: name -> how `_work` makes it
    "zero": "np.zeros((), dtype)",
    "one": "np.ones((), dtype)",
    "exp_max": "np.floor(np.log(np.finfo(dtype).max)).astype(dtype)",
}


@dataclass(frozen=True)
class StepCode:
    """The body of the generated `_step`, between unpacking its arrays and the update.

    Attributes:
        lines: code and comment lines: forward pass, loss `L`, backward pass into the
            gradient arrays dW1, db1, ...
        work: (name, expression that makes it) of each work array and typed constant,
            in the order `_work` makes them; `m` and `dtype` are the batch's.
        unpack: lines that name the work arrays from the dict `work`, a layer a line.
        uses_dt: the lines use `dt`, the scalar type of the batch.
    """

    lines: list[str]
    work: list[tuple[str, str]]
    unpack: list[str]
    uses_dt: bool


def step_code(
    d: Derivation,
    comments: dict[str, list[str]],
    printer: NumPyCode,
    *,
    scale: str,
    l2: bool,
    l2_in_grads: bool,
) -> StepCode:
    """In-place lines for one training step of the derived network.

    Args:
        d: the derivation.
        comments: the equation comments of loss_and_grad's backward lines, by the name
            each line assigns (D3, dW3, db3, H): the step repeats them over its own lines.
        printer: prints constants and fallback expressions (collects helpers).
        scale: what the output delta is scaled by, as code in m (`0.01 / m`).
        l2: the loss has the l2 term (module constant L2).
        l2_in_grads: add l2·W to each dW (momentum, adam); sgd applies it as weight decay.
    """
    em = Emitter(
        printer,
        [SCALE],
        {sp.S.Zero: "zero", sp.S.One: "one", EXP_MAX: "exp_max", SCALE: "scale"},
    )
    n = d.depth
    out = d.output
    out_act = d.layers[-1].activation
    work: list[tuple[str, str]] = []
    pools: dict[int, Scratch] = {}
    lines: list[str] = []
    outputs = {0: "X"}  # the array holding each layer's output A^l
    masks: dict[int, str] = {}  # layer -> its f'(Z), kept from the forward pass

    def pool(l: int) -> Scratch:  # noqa: E741
        return pools.setdefault(l, Scratch(str(l)))

    def add_work(name: str, width: int | str) -> str:
        work.append((name, f"np.empty((m, {width}), dtype)"))
        return name

    def layer_names(l: int) -> set[str]:  # noqa: E741
        """The work arrays of layer l."""
        own = {nm.Z(l), nm.A(l), nm.D(l), f"R{l}", f"ones_{l}", f"M{l}", f"P{l}"}
        return own | set(pools[l].made if l in pools else ())

    loss = out.forward.xreplace({LS: array(nm.LOG_SOFTMAX)})
    # the output pre-activation is still needed after its activation when the loss or
    # the delta reads it (binary cross-entropy from logits)
    z_after_output = loss.has(z) or out.delta.has(z)
    for rule in d.layers:
        l, act = rule.index, rule.activation  # noqa: E741
        last = l == n
        Z = add_work(nm.Z(l), rule.units)
        inp = outputs[l - 1]
        lines += [
            f"np.dot({inp}, {nm.W(l)}, out={Z})  # Z{l} = {inp} W{l} + b{l}",
            f"{Z} += {nm.b(l)}",
        ]
        if act.vector:
            outputs[l] = _softmax_lines(lines, work, l, rule.units, loss)
            continue
        f = act.forward.xreplace({z: array(Z)})
        if f == array(Z):  # identity: the output is the pre-activation
            outputs[l] = Z
            continue
        keep_z = z_after_output if last else act.needs_z
        A = nm.A(l)
        if last and act.forward == sigmoid(z) and loss.has(softplus(-z)):
            # σ(Z) = exp(-softplus(-Z)), and softplus(-Z) is a term of the loss (binary
            # cross-entropy from the logits): computed once, for both. (σ's relative
            # error is then |Z|·ε, not ε: immaterial in δ = σ(Z) - Y.)
            P = add_work(f"P{l}", rule.units)
            add_work(A, rule.units)
            lines.append(
                f"# {A} = sigmoid({Z}) = exp(-{P}), {P} = softplus(-{Z}) (in the loss)"
            )
            lines += em.into(softplus(-array(Z)), P, pool(l))
            lines += [f"np.negative({P}, out={A})", f"np.exp({A}, out={A})"]
            loss = loss.xreplace({softplus(-z): array(P)})
            outputs[l] = A
            continue
        g = None if last else mask_factor(act)
        if g is not None:  # f(z) = z·g(z), g piecewise constant and g = f'
            M = add_work(f"M{l}", rule.units)
            masks[l] = M
            lines.append(f"# {A} = {act.name}({Z}) = {Z}·{M}, {M} = {act.name}'({Z})")
            lines += em.into(g.xreplace({z: array(Z)}), M, pool(l))
            lines.append(f"{A} = np.multiply({Z}, {M}, out={Z})")
            outputs[l] = A
            continue
        # in place when only A^l is needed from here on, and the lines allow it
        code = None if keep_z else em.into(f, Z, pool(l), owner=array(Z))
        if code is not None:
            lines.append(f"# {A} = {act.name}({Z}), computed in {Z}'s array")
            if code[-1].endswith(f"out={Z})"):
                lines += code[:-1] + [f"{A} = {code[-1]}"]
            else:
                lines += code + [f"{A} = {Z}"]
        else:
            add_work(A, rule.units)
            lines.append(f"# {A} = {act.name}({Z})")
            lines += em.into(f, A, pool(l))
        outputs[l] = A

    # the loss, from the output arrays
    names = {a: array(outputs[n]), y: array(nm.TARGET), z: array(nm.Z(n))}
    if out_act.vector and loss.has(z):
        raise RuntimeError("a softmax output's loss must not read Z: it is overwritten")
    lines.append("# L: the terms of loss(), each product summed by one np.vdot")
    lines += em.total(loss.xreplace(names), pool(n), "L", nm.TARGET + ".size")
    lines.append("L = float(L) / m")
    if l2:
        squares = " + ".join(
            f"np.vdot({nm.W(r.index)}, {nm.W(r.index)})" for r in d.layers
        )
        lines.append(f"L += 0.5 * L2 * float({squares})")

    # the backward pass
    D = add_work(nm.D(n), d.layers[-1].units)
    delta = out.delta.xreplace(names)
    if out.jvp:
        lines += comments.get("H", [])
        lines += em.into(delta, D, pool(n))
        lines += comments.get(D, [])
        T = pool(n).take()
        lines += [
            f"np.dot({D}, ones_{n}, out=R{n})",
            f"np.multiply({outputs[n]}, R{n}, out={T})",
            f"{D} -= {T}",
            f"{D} *= scale",
        ]
        pool(n).give(T)
    else:
        lines += comments.get(D, [])
        lines += em.into(delta * SCALE, D, pool(n))
    for rule in reversed(d.layers):
        l = rule.index  # noqa: E741
        D, inp = nm.D(l), outputs[l - 1]
        lines += comments.get(nm.dW(l), [])
        lines.append(f"np.dot({inp}.T, {D}, out={nm.dW(l)})")
        if l2_in_grads:
            lines.append(f"{nm.dW(l)} += L2 * {nm.W(l)}")
        lines += comments.get(nm.db(l), [])
        lines.append(f"np.dot(ones, {D}, out={nm.db(l)})")
        if l == 1:
            break
        below = d.layers[l - 2].activation
        Dp = add_work(nm.D(l - 1), d.layers[l - 2].units)
        lines += comments.get(Dp, [])
        lines.append(f"np.dot({D}, {nm.W(l)}.T, out={Dp})")
        if l - 1 in masks:  # f'(Z) is the mask the forward pass multiplied by
            lines.append(f"{Dp} *= {masks[l - 1]}")
        elif below.df != 1:
            fprime = below.df.xreplace(
                {a: array(outputs[l - 1]), z: array(nm.Z(l - 1))}
            )
            code = em.into(array(Dp) * fprime, Dp, pool(l - 1), owner=array(Dp))
            if code is None:  # f' into a scratch array, then the product
                T = pool(l - 1).take()
                code = em.into(fprime, T, pool(l - 1)) + [f"{Dp} *= {T}"]
                pool(l - 1).give(T)
            lines += code
    for l, p in sorted(pools.items()):  # noqa: E741
        units = d.layers[l - 1].units
        work += [(name, f"np.empty((m, {units}), dtype)") for name in p.made]
    work.append(("ones", "np.ones(m, dtype)"))  # Σₙ δ as the product 1ᵀδ
    work.append(("scale", f"np.array({scale}, dtype)"))
    work += [(name, CONSTANTS[name]) for name in sorted(em.used) if name in CONSTANTS]
    layer_of = {name: l for l in range(1, n + 1) for name in layer_names(l)}
    return StepCode(lines, work, _unpack(work, layer_of), DTYPE in printer.helpers)


@functools.cache
def mask_factor(act: ActivationRule) -> sp.Expr | None:
    """g(z) when f(z) = z·g(z) with g piecewise constant and f' = g (ReLU, leaky ReLU).

    Then the forward pass can compute the mask g(Z) once, take A = Z·g(Z), and keep it
    for the backward pass, where δ ⊙ f'(Z) is δ ⊙ g(Z): one product, no second mask.
    (Z·g(Z) differs from max(Z, 0) only in the sign of zeros, and at Z = -inf.)
    """
    forward, df = numeric(act.forward), numeric(act.df)
    f = forward.rewrite(sp.Piecewise) if forward.has(sp.Max, sp.Min) else forward
    f = sp.piecewise_fold(f)
    if not isinstance(f, sp.Piecewise):
        return None
    pieces = []
    for value, cond in f.args:
        c = sp.cancel(value / z) if value != 0 else sp.S.Zero
        if c.free_symbols:
            return None
        pieces.append((c, cond))
    g = sp.Piecewise(*pieces)
    if not all(
        (g.subs(z, p) - df.subs({a: f.subs(z, p), z: p})).equals(0)
        for p in (-2.5, -1, sp.Rational(-1, 3), 0, sp.Rational(1, 7), 1, 3)
    ):
        return None
    return g


def _unpack(work: list[tuple[str, str]], layer_of: dict[str, int]) -> list[str]:
    """Lines that give each work array its name: one line per layer, then the rest."""
    by_layer: dict[int, list[str]] = {}
    for name, _ in work:
        by_layer.setdefault(layer_of.get(name, 0), []).append(name)
    order = sorted(by_layer, key=lambda l: (l == 0, l))  # noqa: E741
    return [
        f"{', '.join(names)} = {', '.join(f'work[{name!r}]' for name in names)}"
        for names in (by_layer[l] for l in order)  # noqa: E741
    ]


def _softmax_lines(
    lines: list[str], work: list[tuple[str, str]], l: int, units: int, loss: sp.Expr
) -> str:  # noqa: E741
    """Softmax (and log-softmax, when the loss reads it) of Z^l, in place."""
    Z, A, R, ones = nm.Z(l), nm.A(l), f"R{l}", f"ones_{l}"
    work += [
        (A, f"np.empty((m, {units}), dtype)"),
        (R, "np.empty((m, 1), dtype)"),
        (ones, f"np.ones(({units}, 1), dtype)"),
    ]
    lines += [
        "# softmax: subtracting the row max keeps exp() from overflowing",
        f"np.maximum.reduce({Z}, axis=1, keepdims=True, out={R})",
        f"{Z} -= {R}",
        f"np.exp({Z}, out={A})",
        f"np.dot({A}, {ones}, out={R})  # row sums, as a product: faster than sum",
        f"{A} /= {R}  # {A} = softmax({Z})",
    ]
    if loss.has(array(nm.LOG_SOFTMAX)):
        lines += [
            f"np.log({R}, out={R})",
            f"{nm.LOG_SOFTMAX} = np.subtract({Z}, {R}, out={Z})"
            f"  # log-softmax({Z}), in {Z}'s array",
        ]
    return A
