"""In-place NumPy lines for one statement: a SymPy expression -> ufunc calls with out=.

`loss_and_grad` prints each statement as one NumPy expression, so every operation in it
allocates a fresh array. The step evaluates the same statements into work arrays made
once per batch size instead: `Emitter.into(expr, dest)` walks the expression and writes
one NumPy call per node, each with `out=`; 1 - a² into tmp2 becomes

    np.square(h2, out=tmp2)
    np.subtract(one, tmp2, out=tmp2)

Recognised nodes: sums, products and quotients, constant powers, the unary ufuncs (exp,
log, tanh, ...), sigmoid and softplus, max/min, comparisons (a 0/1 mask written straight
into a float array), two-piece rules with constant values (relu', leaky_relu'), the
array nodes of a plan (a matrix product as np.dot(out=), row and column sums as products
with ones, row maxima as np.maximum.reduce) and dropout's mask. Any other node — np.where
with expressions in its branches, _erf, boolean logic — falls back to
`dest[...] = <the printed node>`: correct, only not allocation-free. The operations are
those of the printed form; only the grouping of an n-ary sum or product may differ, so
results agree to rounding.

Scratch arrays come from a `Scratch` pool per layer and shape (tmp2, tmp2_2, ...); the
caller makes the ones a step used. `owner` names an input whose array is also `dest`
(A1 = tanh(A1) in place): it must occur at most once, and it is read before dest is
first written. `donors` are inputs read for the last time: their arrays serve as
scratch (the optimizer's update, whose arrays have every parameter's shape).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import sympy as sp
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.printer import Printer

from ..naming import BATCH, ONES_BATCH, ones_row
from ..sym.arrays import (
    Einsum,
    FirstMax,
    KeepMask,
    MatProduct,
    Padded,
    ReductionBase,
    ScatterWindows,
    Transposed,
    ViewBase,
    WindowMax,
    Windows,
)
from ..sym.code import FUNCTIONS, NumPyCode, number_text
from ..sym.functions import numeric, sigmoid, softplus, variables

EXP_MAX = sp.Symbol("EXP_MAX")  # key of `constants`: log of the largest float, floored
COMPARE = {
    "<": "less",
    "<=": "less_equal",
    ">": "greater",
    ">=": "greater_equal",
    "==": "equal",
    "!=": "not_equal",
}
# the window (kh, kw, sh, sw) of the numba module's direct convolution kernels
# (templates/windows_numba.py.jinja: _direct_conv, _conv_scatter)
DIRECT_CONV = (3, 3, 1, 1)
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


def _margins(keyword: str, e: sp.Expr) -> str:
    """`, keyword=(ph, pw)`: the rows and columns around an image that a Padded or
    Cropped node e adds or takes away (its second and third arguments)."""
    return f", {keyword}=({int(e.args[1])}, {int(e.args[2])})"


def _spread(subscripts: str, operands: list[str]) -> list[str] | None:
    """The operands of an einsum that sums nothing, each indexed with None for the
    result's letters it lacks ("ncij,ncijpq->ncijpq": a[:, :, :, :, None, None], b):
    a broadcast elementwise product; None where a letter is summed or an operand's
    letters are not in the result's order."""
    ins, res = subscripts.split("->")
    letters = ins.split(",")
    if len(letters) != 2 or set("".join(letters)) != set(res):
        return None
    out = []
    for lets, name in zip(letters, operands, strict=True):
        if [c for c in res if c in lets] != list(lets):
            return None
        if lets == res:
            out.append(name)
        else:
            index = ", ".join(":" if c in lets else "None" for c in res)
            out.append(f"{name}[{index}]")
    return out


def _count(e: sp.Expr, s: sp.Symbol) -> int:
    """How often the symbol s occurs in e."""
    if e == s:
        return 1
    return sum(_count(arg, s) for arg in e.args)


class _OwnerOverwritten(Exception):
    """An expression would read its owner after the owner's array was overwritten."""


class ScalarCode(NumPyCode):
    """Prints expressions of Python numbers (`scale`, the optimizer's step scalars): a
    square root as ** 0.5, since np.sqrt would make a NumPy scalar."""

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        if expr.exp == sp.S.Half and variables(expr):
            return f"{self.parenthesize(expr.base, PRECEDENCE['Pow'])}**0.5"
        return super()._print_Pow(expr, rational)


class Emitter(Printer):
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
        super().__init__()
        self.printer = printer
        self.scalar_printer = ScalarCode()  # Python numbers: scale, step scalars
        self.scalar_printer.helpers = printer.helpers
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
        # window operands a printed _contract copied into a work array, kept from its
        # pool while the array they view is unwritten (see forget): operand text ->
        # (work array, its pool, the array viewed); `_copied` the current into()'s
        self.copies: dict[str, tuple[str, Scratch, str]] = {}
        self.contracted: set[str] = set()  # the arrays a _contract writes
        # the step's dict of work arrays, passed to the numba module's _contract and
        # _conv_scatter for their kernels' scratch (None: the NumPy module's takes none)
        self.work_dict: str | None = None
        self._copied: dict[str, tuple[str, Scratch, str]] = {}

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
        self._copied = {}
        try:
            self._into(self.top, dest)
        except _OwnerOverwritten:
            kept = {name for name, _, _ in self.copies.values()}  # still reserved
            for name in pool.made:
                if name not in pool.free and name not in kept:
                    pool.give(name)
            for name, taken, _ in self._copied.values():
                if name not in taken.free:
                    taken.give(name)
            return None
        self.copies.update(self._copied)
        return self.lines

    def forget(self, written: str | None) -> None:
        """The array `written` (None: any) was written: the copies of its windows
        that contractions kept are stale, their work arrays back to their pools."""
        for text, (name, taken, viewed) in list(self.copies.items()):
            if written is None or viewed == written:
                del self.copies[text]
                if name not in taken.free:
                    taken.give(name)

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
        return e.is_Symbol or isinstance(e, ViewBase) or self._is_scalar(e)

    def _scalar_text(self, e: sp.Expr, grouped: bool = False) -> str:
        """A scalar operand; `grouped` parenthesizes a sum (for use inside a product)."""
        if e.is_Symbol:
            return e.name
        if not e.free_symbols:
            return number_text(e)
        text = self.scalar_printer.doprint(e)
        return f"({text})" if grouped and e.is_Add else text

    def _text(self, e: sp.Expr) -> str:
        if e == self.owner and self.written:
            raise _OwnerOverwritten
        if isinstance(e, ViewBase):  # a view of an array, printed as the expression
            if self._has_owner(e) and self.written:
                raise _OwnerOverwritten
            return self.printer.doprint(e)
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
        """Lines that leave e in dest: a copy, a fill, or the node's _print_ method."""
        if e.is_Symbol and not self._is_scalar(e):
            if e.name != dest:
                self._line(f"np.copyto({dest}, {self._text(e)})", dest)
        elif isinstance(e, ViewBase):
            self._line(f"np.copyto({dest}, {self._text(e)})", dest)
        elif self._is_scalar(e):
            self._line(f"{dest}.fill({self._scalar_text(e)})", dest)
        else:
            self._print(e, dest=dest)

    # ------------------------------------------------------ nodes: _print_<Class>(e, dest)

    def _print_Basic(self, e: sp.Basic, dest: str) -> None:  # noqa: N802
        """Any other node: its printed NumPy expression, assigned (allocating)."""
        if self._has_owner(e) and self.written:
            raise _OwnerOverwritten
        self._line(f"{dest}[...] = {self.printer.doprint(e)}", dest)

    def _print_KeepMask(self, e: KeepMask, dest: str) -> None:  # noqa: N802
        """Inverted dropout's mask: uniforms, compared with the rate, scaled."""
        rate = float(e.args[1])
        # the uniforms in the params' dtype, as _keep_mask draws them (float32 too)
        self._line(f"rng.random(dtype={dest}.dtype, out={dest})", dest)
        self._emit("greater_equal", [dest, number_text(e.args[1])], dest)
        self._emit("multiply", [dest, number_text(sp.Float(1 / (1 - rate)))], dest)

    def _print_MatProduct(self, e: MatProduct, dest: str) -> None:  # noqa: N802
        left, right = (self._matrix(x) for x in e.args)
        self._line(f"np.dot({left}, {right}, out={dest})", dest)

    # images (arrays.py): each window operation writes into dest; operands are arrays
    # or views of them
    def _atoms(self, args: tuple) -> list[str]:
        out = []
        for x in args:
            if not self._is_atom(x):  # the plan gives each compound its own statement
                raise ValueError(f"an expression inside a window operation: {x}")
            out.append(self._text(x))
        return out

    def _print_Einsum(self, e: Einsum, dest: str) -> None:  # noqa: N802
        """A contraction of two arrays as matrix products (_contract, with scratch
        arrays of the operands' and the result's sizes); a product with nothing summed
        (each operand's letters in the result's order) as np.multiply, the operands
        broadcast; any other einsum (one operand, or a letter kept from both) as
        np.einsum(out=)."""
        subscripts = e.args[0].name
        operands = self._atoms(e.args[1:])
        spread = _spread(subscripts, operands)
        if spread is not None:  # an elementwise product: np.multiply, broadcast
            self._line(f"np.multiply({', '.join(spread)}, out={dest})", dest)
            return
        gemm = self._gemm_shapes(e)
        if gemm is None or self.pool_for is None:
            joined = ", ".join(operands)
            self._line(f'np.einsum("{subscripts}", {joined}, out={dest})', dest)
            return
        pools = [self.pool_for(shape) for shape in gemm]
        work: list[str] = []
        kept = ""
        held: list[tuple[str, Scratch, str, str] | None] = [None, None, None]
        for k, pool in enumerate(pools):
            text = operands[k] if k < 2 else ""
            if text in self.copies:  # its copy is still in a work array: reuse it
                work.append(self.copies[text][0])
                kept += "ab"[k]
                continue
            work.append(pool.take())
            x = e.args[1 + k] if k < 2 else None
            if isinstance(x, Windows) and text not in self._copied:
                held[k] = (work[k], pool, x.args[0].name, text)
        self.printer.helpers.add("_contract")
        self.contracted.add(dest)
        extra = f', kept="{kept}"' if kept else ""
        if self.work_dict is not None:
            extra += f", work={self.work_dict}"
        self._line(
            f'_contract("{subscripts}", {", ".join(operands)}, {dest},'
            f" {', '.join(work)}{extra})",
            dest,
        )
        for k, pool in enumerate(pools):
            h = held[k]
            if k < 2 and "ab"[k] in kept:
                continue  # still kept, for a later contraction too
            if h is not None:  # kept from the pool: a later contraction may reuse it
                self._copied[h[3]] = (h[0], h[1], h[2])
            else:
                pool.give(work[k])

    def _operand_shape(self, e: sp.Expr) -> tuple | None:
        if e.is_Symbol:
            return self.shapes.get(e.name)
        if isinstance(e, Windows):
            x = self._operand_shape(e.args[0])
            if x is None:
                return None
            kh, kw, sh, sw = (int(v) for v in e.args[1:])
            m, c, h, w = x
            return (m, c, (h - kh) // sh + 1, (w - kw) // sw + 1, kh, kw)
        return None

    def _gemm_shapes(self, e: Einsum) -> list[tuple] | None:
        """The shapes of _contract's work arrays (a as (kept, summed), b as (summed,
        kept), their product), or None where it does not apply. _contract reads them
        as flat memory of these sizes and lays its copies out as it needs; arrays of
        one shape in a layer are one pool, shared by its contractions."""
        split = e.matrix_product
        shapes = [self._operand_shape(x) for x in e.args[1:]]
        if split is None or None in shapes:
            return None
        keep_a, summed, keep_b = split
        la, lb = e.args[0].name.split("->")[0].split(",")
        dims: dict[str, object] = {}
        for letters, shape in zip((la, lb), shapes, strict=True):
            dims.update(zip(letters, shape, strict=True))  # type: ignore[arg-type]
        return [
            tuple(dims[c] for c in keep_a + summed),
            tuple(dims[c] for c in summed + keep_b),
            tuple(dims[c] for c in keep_a + keep_b),
        ]

    def _window_call(self, helper: str, e: sp.Expr, dest: str) -> None:
        self.printer.helpers.add(helper)
        (x,) = self._atoms(e.args[:1])
        rest = ", ".join(str(int(v)) for v in e.args[1:])
        self._line(f"{helper}({x}, {rest}, out={dest})", dest)

    def joined(self, exprs: list[sp.Expr], dests: list[str]) -> list[str]:
        """One line for two or three statements (numpy_module._joined), exprs into
        dests: a scatter of an elementwise product (an einsum that sums nothing) as
        the numba module's _scatter_windows, which multiplies its two window-shaped
        arguments (each broadcast) as it scatters, the product not written; a
        convolution's input gradient at each window entry and its scatter as its
        _conv_scatter, one transposed convolution, the window-shaped gradient not
        written, and with a crop of the scattered image (Cropped) only the entries
        the crop keeps, into the crop's array; a window max and the mask of its
        first maximum as its _window_max, which writes both, and with a padding of
        the maxima (Padded) the maxima straight into the padded array's inside."""
        self.lines, self.owner = [], None
        first, second, *then = exprs
        out = dests[-1]
        if isinstance(first, WindowMax):
            self.printer.helpers.add("_window_max")
            (win,) = self._atoms(first.args)
            if then:  # Padded(maxima, ph, pw): the rows and columns of zeros
                self.printer.helpers.add("_zero_border")
                pad = _margins("pad", then[0])
                self._line(f"_window_max({win}, out={out}, first={dests[1]}{pad})", out)
            else:
                self._line(f"_window_max({win}, out={dests[0]}, first={out})", out)
            return self.lines
        rest = ", ".join(str(int(v)) for v in second.args[1:])
        if not self.is_product(first):  # a transposed convolution and its scatter
            self.printer.helpers.add("_conv_scatter")
            a, b = self._atoms(first.args[1:])
            subscripts = first.args[0].name
            # Cropped(image, ph, pw, h, w): the rows and columns kept
            kept = _margins("crop", then[0]) if then else ""
            self._line(
                f'_conv_scatter("{subscripts}", {a}, {b}, {rest}, out={out}, '
                f"work={self.work_dict}{kept})",
                out,
            )
            return self.lines
        self.printer.helpers.add("_scatter_windows")
        spread = _spread(first.args[0].name, self._atoms(first.args[1:]))
        if spread is None:
            raise ValueError(f"not an elementwise product: {first}")
        self._line(
            f"_scatter_windows({spread[0]}, {rest}, out={out}, by={spread[1]})", out
        )
        return self.lines

    @staticmethod
    def is_transposed_conv(e: sp.Expr, scatter: sp.Expr) -> bool:
        """Whether e, scattered onto the image by scatter (ScatterWindows), is the
        input gradient of a convolution whose window the numba module's direct
        kernels take (DIRECT_CONV): an einsum of two arrays, (n, f, i, j) and (f, c,
        p, q) in any order of their letters, summing f alone into windows (n, c, i,
        j, p, q)."""
        if not isinstance(e, Einsum) or len(e.args) != 3:
            return False
        if tuple(int(v) for v in scatter.args[3:]) != DIRECT_CONV:
            return False
        ins, res = e.args[0].name.split("->")
        la, lb = ins.split(",")
        summed = [c for c in la if c in lb]
        if len(res) != 6 or len(set(res)) != 6 or len(summed) != 1:
            return False
        n, c, i, j, p, q = res
        f = summed[0]
        operands = {frozenset(la), frozenset(lb)}
        return operands == {frozenset((n, f, i, j)), frozenset((f, c, p, q))}

    @staticmethod
    def is_product(e: sp.Expr) -> bool:
        """Whether e is an einsum of two arrays that sums nothing (np.multiply)."""
        names = [str(x) for x in e.args[1:]]
        return isinstance(e, Einsum) and _spread(e.args[0].name, names) is not None

    def _print_Padded(self, e: Padded, dest: str) -> None:  # noqa: N802
        self._window_call("_pad", e, dest)

    def _print_ScatterWindows(self, e: ScatterWindows, dest: str) -> None:  # noqa: N802
        self._window_call("_scatter_windows", e, dest)

    def _print_WindowMax(self, e: WindowMax, dest: str) -> None:  # noqa: N802
        self.printer.helpers.add("_window_max")
        (x,) = self._atoms(e.args)
        self._line(f"_window_max({x}, out={dest})", dest)

    def _print_FirstMax(self, e: FirstMax, dest: str) -> None:  # noqa: N802
        self.printer.helpers.add("_first_max")
        win, top = self._atoms(e.args)
        work = self.pool.take()  # the running count, of the mask's shape
        self._line(f"_first_max({win}, {top}, out={dest}, work={work})", dest)
        self.pool.give(work)

    def _print_ReductionBase(self, e: ReductionBase, dest: str) -> None:  # noqa: N802
        if e.axis is None or e is not self.top:  # its shape is not dest's
            raise ValueError(f"{type(e).__name__} inside an expression: {e}")
        self._reduce(e, dest)

    def _print_Add(self, e: sp.Add, dest: str) -> None:  # noqa: N802
        items = [
            (True, -t) if t.could_extract_minus_sign() else (False, t) for t in e.args
        ]
        self._fold("add", items, dest)

    def _print_Mul(self, e: sp.Mul, dest: str) -> None:  # noqa: N802
        self._mul(e, dest)

    def _print_Pow(self, e: sp.Pow, dest: str) -> None:  # noqa: N802
        self._pow(e, dest)

    def _print_Function(self, e: sp.Function, dest: str) -> None:  # noqa: N802
        """The elementwise functions of the one table (printers.code.FUNCTIONS)."""
        name = FUNCTIONS.get(type(e))
        if name is None:
            self._print_Basic(e, dest)
        else:
            self._unary(name, e.args[0], dest)

    def _print_sigmoid(self, e: sigmoid, dest: str) -> None:
        """The module's _sigmoid into dest; with exp_max, −x is capped where e^−x would
        overflow (it changes only results below the smallest normal number)."""
        self.printer.helpers.add("_sigmoid")
        x = self._first(e.args[0], dest)
        if EXP_MAX in self.constants:
            cap = self._text(EXP_MAX)
            self._line(f"_sigmoid({x}, out={dest}, cap={cap})", dest)
        else:
            self._line(f"_sigmoid({x}, out={dest})", dest)

    def _print_softplus(self, e: softplus, dest: str) -> None:
        """log(1 + e^x), as np.logaddexp(0, x)."""
        x = self._first(e.args[0], dest)
        self._emit("logaddexp", [self._text(sp.S.Zero), x], dest)

    def _print_MinMaxBase(self, e: sp.Max | sp.Min, dest: str) -> None:  # noqa: N802
        if len(e.args) != 2:
            return self._print_Basic(e, dest)
        args = sorted(e.args, key=self._is_scalar)  # the array first, as printed
        self._binary("maximum" if isinstance(e, sp.Max) else "minimum", *args, dest)
        return None

    def _print_Relational(self, e: sp.Rel, dest: str) -> None:  # noqa: N802
        if e.rel_op not in COMPARE:
            return self._print_Basic(e, dest)
        self._binary(COMPARE[e.rel_op], e.lhs, e.rhs, dest)  # 0/1 in a float array
        return None

    def _print_Piecewise(self, e: sp.Piecewise, dest: str) -> None:  # noqa: N802
        if self._two_constants(e):
            self._mask(e, dest)
        else:
            self._print_Basic(e, dest)

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
        rank = max(len(self.shapes.get(s.name, ())) for s in arg.free_symbols)
        if rank > 2:  # an image (m, C, H, W): NumPy's reduction, into dest
            self._reduce_image(e, x, dest)
            return
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

    def _reduce_image(self, e: ReductionBase, x: str, dest: str) -> None:
        """A reduction of an image: over each example's (C, H, W), kept as (m, 1, 1,
        1), or over the batch, as (C, H, W); np.add.reduce or np.maximum.reduce with
        out= (no temporary), a mean then divided by the count."""
        ufunc = "maximum" if e.op == "max" else "add"
        self._line(
            f"np.{ufunc}.reduce({x}, axis={e.axis}, keepdims={e.keepdims},"
            f" out={dest})",
            dest,
        )
        if e.op == "mean":
            shape = self._shape(e.args[0])
            axes = e.axis if isinstance(e.axis, tuple) else (e.axis,)
            count = 1
            for k in axes:
                count *= shape[k] if isinstance(shape[k], int) else sp.Symbol(BATCH)
            self._emit("divide", [dest, self._scalar_text(sp.sympify(count))], dest)

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
