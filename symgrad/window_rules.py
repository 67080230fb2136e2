"""Derivations of the layers that slide a window over an image: a convolution and the
two poolings, as index-notation sums that SymPy differentiates.

Each is written once, for symbolic sizes, strides and paddings:

    conv    z[n,f,i,j] = Σ_{c,p,q} W[f,c,p,q] · x[n,c, s_h·i + p − p_h, s_w·j + q − p_w] + b[f]
    avg     z[n,c,i,j] = Σ_{p,q} x[n,c, s_h·i + p, s_w·j + q] / (k_h k_w)
    max     z[n,c,i,j] = Σ_{p,q} M[n,c,i,j,p,q] · x[n,c, s_h·i + p, s_w·j + q]

(M: 1 at each window's first maximum in row-major order, else 0 — piecewise constant,
so the max is this sum wherever it is differentiable, and PyTorch's rule on ties). The
loss reaches z through G = ∂L/∂z, so L = Σ G[n,·,i,j] z[n,·,i,j] + (terms free of the
layer), and ∂L/∂θ for each parameter and for the input x is `sp.diff` of that sum by
an entry θ[F, C, P, Q]. The Kronecker deltas diff leaves are summed out where they pin
a summation index (`collapse`); what remains is read as a contraction (`contraction`):
which arrays, over which indices, and whether an operand is read through the window
view of the (padded) input — an x[.., s·i + p − pad, ..] entry — or the result is
written back through it — a δ(U, s·i + p − pad) on an index of x: the adjoint of the
view, a scatter-add of the window entries onto the input. The printers turn a
contraction into `einsum` with fixed subscripts over strided windows, and the scatter
into window-by-window adds (col2im); no backward pass of a convolution is written
anywhere: ∂L/∂x comes out of diff as Σ G[N,f,i,j] W[f,C,p,q] δ(U, s_h i + p − p_h)
δ(V, s_w j + q − p_w), and with the deltas summed out over the kernel offsets
(`pinned`) it reads as the textbook states it, a full correlation of the
stride-dilated δ with the flipped kernel: Σ G[N,f,i,j] W[f,C, U − s_h i + p_h,
V − s_w j + p_w].
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import sympy as sp

from . import cache
from .errors import DerivationError
from .layer_registry import Rule

# indices of the forward sum, and of the entry a derivative is taken by
_I = functools.partial(sp.Symbol, integer=True)
n, f, c, i, j, p, q = (_I(s) for s in "nfcijpq")
N, F, C, P, Q, U, V = (_I(s) for s in "NFCPQUV")
# sizes, strides and paddings, symbolic: one derivation serves every layer
m, nf, nc, ho, wo, kh, kw = (
    sp.Symbol(s, integer=True, positive=True)
    for s in ("m", "n_f", "n_c", "H_o", "W_o", "k_h", "k_w")
)
sh, sw = (sp.Symbol(s, integer=True, positive=True) for s in ("s_h", "s_w"))
ph, pw = (sp.Symbol(s, integer=True, nonnegative=True) for s in ("p_h", "p_w"))
x, W, b, G, M = (sp.IndexedBase(s) for s in ("x", "W", "b", "G", "M"))

OPS = ("conv", "avg", "max")  # what a window layer computes over each window


@dataclass(frozen=True)
class Operand:
    """An array of a contraction: its name in the derivation (x, W, b, G, M), its
    einsum letters, and whether it is read through the window view of the padded
    input (then its letters are n, c, i, j, p, q: batch, channel, window position,
    offset in the window)."""

    name: str
    letters: str
    windowed: bool = False


@dataclass(frozen=True)
class Contraction:
    """Σ over the letters not in `out` of scale · Π operands, as one einsum; with
    `scatter`, the result (window-shaped, letters n c i j p q) is added back onto the
    input's entries it was read from (the adjoint of the window view)."""

    operands: tuple[Operand, ...]
    out: str
    scale: sp.Expr = sp.S.One
    scatter: bool = False

    @property
    def subscripts(self) -> str:
        return ",".join(o.letters for o in self.operands) + "->" + self.out

    @property
    def broadcast(self) -> bool:
        """The result has letters no operand has: one operand, spread along them."""
        return not set(self.out) <= set("".join(o.letters for o in self.operands))


@dataclass(frozen=True)
class IndexSum:
    """One derived quantity: `raw` as diff gives it, `terms` (summand, summed) after
    the deltas that pin an index are summed out, `shown` those as sums, `textbook`
    with a window adjoint's deltas summed out too (the flipped kernel), and the
    contraction that computes each term (several for a sum: the bias)."""

    target: sp.Expr  # z[n,f,i,j], or the entry differentiated by: W[F,C,P,Q], ...
    raw: sp.Expr
    shown: sp.Expr  # the collapsed terms as unevaluated sums (what the report prints)
    terms: tuple[tuple[sp.Expr, tuple[sp.Symbol, ...]], ...]  # (summand, summed)
    textbook: sp.Expr
    contractions: tuple[Contraction, ...]


@dataclass(frozen=True)
class WindowRuleSet:
    """A window layer's derivation: its forward sum and each gradient, by name (the
    parameters W, b; x for the input)."""

    op: str
    forward: IndexSum
    grads: tuple[tuple[str, IndexSum], ...]

    def grad(self, name: str) -> IndexSum:
        return dict(self.grads)[name]


def _window_entry() -> sp.Expr:
    return x[n, c, sh * i + p - ph, sw * j + q - pw]


def _forward(op: str) -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
    """The forward sum of op and its output's indices."""
    over_pq = ((p, 0, kh - 1), (q, 0, kw - 1))
    if op == "conv":
        body = sp.Sum(W[f, c, p, q] * _window_entry(), (c, 0, nc - 1), *over_pq)
        return body + b[f], (n, f, i, j)
    if op == "avg":
        return sp.Sum(_window_entry(), *over_pq) / (kh * kw), (n, c, i, j)
    if op == "max":
        return sp.Sum(M[n, c, i, j, p, q] * _window_entry(), *over_pq), (n, c, i, j)
    raise ValueError(f"unknown window op {op!r}")


def _entries(op: str) -> dict[str, sp.Expr]:
    """The entries the loss is differentiated by: the parameters', then the input's."""
    out = {"W": W[F, C, P, Q], "b": b[F]} if op == "conv" else {}
    out["x"] = x[N, C, U, V]
    return out


@cache.persistent(lambda op: (op,))
def window_rules(op: str) -> WindowRuleSet:
    """Derive a window layer: its forward sum and ∂L/∂(each parameter, the input);
    cached in memory and on disk (symgrad/cache.py: the key is the op, and symgrad's
    code)."""
    body, out = _forward(op)
    ranges = {n: m, f: nf, c: nc, i: ho, j: wo}
    loss = sp.Sum(G[out] * body, *((k, 0, ranges[k] - 1) for k in out))
    forward = _index_sum(sp.IndexedBase("z")[out], body, out)
    grads = []
    for name, entry in _entries(op).items():
        raw = sp.diff(loss, entry)
        grads.append((name, _index_sum(entry, raw, entry.indices)))
    return WindowRuleSet(op, forward, tuple(grads))


LIMITS = {n: m, f: nf, c: nc, i: ho, j: wo, p: kh, q: kw}


def _shown(terms: tuple[tuple[sp.Expr, tuple[sp.Symbol, ...]], ...]) -> sp.Expr:
    """Terms as unevaluated sums over their indices' ranges."""
    return sp.Add(
        *(
            sp.Sum(s, *((k, 0, LIMITS[k] - 1) for k in summed)) if summed else s
            for s, summed in terms
        ),
        evaluate=False,
    )


def pinned(summand: sp.Expr, summed: tuple[sp.Symbol, ...]) -> tuple:
    """The deltas δ(U, s·i + p − pad) of a window's adjoint summed out over the kernel
    offset p (p = U − s·i + pad): the form a textbook states, Σ G · W at the flipped
    offsets (zero where an offset falls outside the kernel)."""
    out = list(summed)
    for d in sorted(summand.atoms(sp.KroneckerDelta), key=str):
        coord, pattern = d.args if d.args[0] in (U, V) else d.args[::-1]
        found = _affine(pattern)
        if found is None or found[1] not in out:
            continue
        (solution,) = sp.solve(sp.Eq(pattern, coord), found[1])
        summand = summand.xreplace({d: sp.S.One}).xreplace({found[1]: solution})
        out.remove(found[1])
    return summand, tuple(out)


def _index_sum(target: sp.Expr, raw: sp.Expr, free: tuple[sp.Expr, ...]) -> IndexSum:
    terms = tuple(collapse(t) for t in sp.Add.make_args(raw))
    terms = tuple(t for t in terms if t[0] != 0)
    shown = _shown(terms)
    textbook = _shown(tuple(pinned(s, summed) for s, summed in terms))
    return IndexSum(
        target,
        raw,
        shown,
        terms,
        textbook,
        tuple(contraction(s, summed, free) for s, summed in terms),
    )


def _flatten(e: sp.Expr) -> tuple[sp.Expr, list[sp.Symbol]]:
    """A product of nested sums as one summand and its summation indices."""
    summed: list[sp.Symbol] = []
    factors = []
    for fac in sp.Mul.make_args(e):
        while isinstance(fac, sp.Sum):
            summed += [lim[0] for lim in fac.limits]
            fac = fac.function
        if isinstance(fac, sp.Mul):
            inner, more = _flatten(fac)
            factors.append(inner)
            summed += more
        else:
            factors.append(fac)
    return sp.Mul(*factors), summed


def collapse(e: sp.Expr) -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
    """e (a sum of products with Kronecker deltas) as (summand, summed indices), each
    delta that equates a summed index with something else summed out: Σ_f δ(F, f) g(f)
    = g(F) (the index ranges hold every entry: the derivative is by an entry)."""
    summand, summed = _flatten(e)
    changed = True
    while changed:
        changed = False
        for d in summand.atoms(sp.KroneckerDelta):
            a1, a2 = d.args
            pin = a2 if a2 in summed else a1 if a1 in summed else None
            if pin is None:
                continue
            other = a1 if pin is a2 else a2
            summand = summand.xreplace({d: sp.S.One}).xreplace({pin: other})
            summed.remove(pin)
            changed = True
            break
    return summand, tuple(summed)


def _letter(s: sp.Symbol) -> str:
    return s.name.lower()


def _affine(e: sp.Expr) -> tuple[sp.Symbol, sp.Symbol] | None:
    """(window position, offset) of s·i + p − pad, the index of a window entry."""
    stride = {sh: ph, sw: pw}
    for s, pad in stride.items():
        for pos in (i, j):
            for off in (p, q, P, Q):
                if sp.expand(e - (s * pos + off - pad)) == 0:
                    return pos, off
    return None


def contraction(
    summand: sp.Expr, summed: tuple[sp.Symbol, ...], free: tuple[sp.Expr, ...]
) -> Contraction:
    """How to compute Σ_summed summand for every value of the free indices: the
    pattern of its factors read as einsum operands (module docstring)."""
    scale = sp.S.One
    operands: list[Operand] = []
    scatter: dict[sp.Symbol, sp.Symbol] = {}  # an index of x -> its window position
    offsets: dict[sp.Symbol, sp.Symbol] = {}
    for fac in sp.Mul.make_args(summand):
        if not fac.free_symbols or fac.free_symbols <= {kh, kw}:
            scale *= fac
        elif isinstance(fac, sp.KroneckerDelta):
            a1, a2 = fac.args
            coord, pattern = (a1, a2) if a1 in (U, V) else (a2, a1)
            found = _affine(pattern)
            if coord not in (U, V) or found is None:
                raise DerivationError(f"symgrad bug: a delta not of a window: {fac}")
            scatter[coord], offsets[coord] = found
        elif isinstance(fac, sp.Indexed):
            idx = fac.indices
            if fac.base == x and len(idx) == 4 and all(_affine(e) for e in idx[2:]):
                (pi, oi), (pj, oj) = (_affine(e) for e in idx[2:])  # type: ignore[misc]
                letters = _letter(idx[0]) + _letter(idx[1])
                letters += _letter(pi) + _letter(pj) + _letter(oi) + _letter(oj)
                operands.append(Operand("x", letters, True))
            elif all(isinstance(e, sp.Symbol) for e in idx):
                operands.append(
                    Operand(str(fac.base), "".join(_letter(e) for e in idx))
                )
            else:
                raise DerivationError(f"symgrad bug: an entry not read as one: {fac}")
        else:
            raise DerivationError(f"symgrad bug: a factor not of a contraction: {fac}")
    out = ""
    for e in free:
        if e in scatter:  # the result runs over the windows: (i, p) for U
            continue
        out += _letter(e)
    if scatter:
        out += _letter(scatter[U]) + _letter(scatter[V])
        out += _letter(offsets[U]) + _letter(offsets[V])
    return Contraction(tuple(operands), out, scale, bool(scatter))


# ---------------------------------------------------------------- the layers' rules


@dataclass(frozen=True)
class WindowGeometry:
    """Shapes of a window layer: input (C, H, W), output (C', H', W'), kernel,
    stride, padding (pairs)."""

    image: tuple[int, int, int]
    out: tuple[int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]

    @property
    def padded(self) -> tuple[int, int]:
        return (
            self.image[1] + 2 * self.padding[0],
            self.image[2] + 2 * self.padding[1],
        )

    @property
    def windows(self) -> tuple[int, ...]:
        """The window view's shape per example: (C, H', W', kh, kw)."""
        return (self.image[0], self.out[1], self.out[2], *self.kernel)


@dataclass(frozen=True)
class ConvRule(Rule):
    """A conv2d layer: its geometry, filters, activation rule and the index sums
    SymPy differentiated."""

    index: int
    units: int  # C'·H'·W'
    geometry: WindowGeometry
    activation: Any  # derive.ActivationRule
    rules: WindowRuleSet
    residual: bool = False

    kind = "conv2d"

    @property
    def filters(self) -> int:
        return self.geometry.out[0]

    @property
    def fan_in(self) -> int:
        return (
            self.geometry.image[0] * self.geometry.kernel[0] * self.geometry.kernel[1]
        )

    @property
    def fan_out(self) -> int:
        return self.filters * self.geometry.kernel[0] * self.geometry.kernel[1]

    @property
    def trainable(self) -> int:
        return (self.fan_in + 1) * self.filters

    @property
    def activations(self) -> tuple[Any, ...]:
        return (self.activation,)

    @property
    def title(self) -> str:
        c, h, w = self.geometry.out
        res = ", residual" if self.residual else ""
        return f"conv {c}×{h}×{w} ({self.activation.title}{res})"

    @property
    def label(self) -> str:
        rows, cols = self.geometry.kernel
        res = ", residual" if self.residual else ""
        return f"conv {rows}×{cols}, {self.activation.title}{res}"


@dataclass(frozen=True)
class PoolRule(Rule):
    """A max or average pooling layer: its geometry and its derived index sums."""

    index: int
    units: int
    geometry: WindowGeometry
    rules: WindowRuleSet
    kind: str = "maxpool2d"  # type: ignore[assignment]

    @property
    def fan_in(self) -> int:
        return self.units

    @property
    def title(self) -> str:
        c, h, w = self.geometry.out
        return f"{self.rules.op}pool {c}×{h}×{w}"

    @property
    def label(self) -> str:
        rows, cols = self.geometry.kernel
        return f"{self.rules.op}pool {rows}×{cols}"


@dataclass(frozen=True)
class FlattenRule(Rule):
    """flatten: (C, H, W) → C·H·W, row-major (torch.flatten(x, 1))."""

    index: int
    units: int
    image: tuple[int, int, int]

    kind = "flatten"

    @property
    def fan_in(self) -> int:
        return self.units

    @property
    def title(self) -> str:
        return f"flatten {self.units}"

    @property
    def label(self) -> str:
        return "flatten"


__all__ = [
    "Contraction",
    "ConvRule",
    "FlattenRule",
    "IndexSum",
    "Operand",
    "PoolRule",
    "WindowGeometry",
    "WindowRuleSet",
    "collapse",
    "contraction",
    "window_rules",
]
