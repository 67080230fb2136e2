"""Numerically stable SymPy functions, and the rewrite that introduces them.

Derivation works on plain SymPy (exp, log); before an expression is printed as code,
`stabilize` rewrites the forms that overflow or lose precision into these functions:

    1/(1 + e^{-u})    -> sigmoid(u)        (printed as an overflow-free helper)
    log(1 + e^{u})    -> softplus(u)       (printed as np.logaddexp(0, u))
    log(sigmoid(u))   -> -softplus(-u)
    log(1 - sigmoid(u)) -> -softplus(u)
    log(cosh(u))      -> |u| + softplus(-2|u|) - log 2

Each function knows its derivative (`fdiff`), so a stabilized expression is still a
valid SymPy expression.
"""

from __future__ import annotations

import sympy as sp


class sigmoid(sp.Function):  # noqa: N801 - SymPy functions are lower case
    """The logistic function 1/(1 + e^{-x})."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return 1 / (1 + sp.exp(-x))

    def _latex(self, printer: sp.printing.latex.LatexPrinter) -> str:
        arg = printer._print(self.args[0])
        return rf"\sigma\left({arg}\right)"


class softplus(sp.Function):  # noqa: N801
    """log(1 + e^{x}), computed without overflow."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return sp.log(1 + sp.exp(x))

    def _latex(self, printer: sp.printing.latex.LatexPrinter) -> str:
        arg = printer._print(self.args[0])
        return rf"\operatorname{{softplus}}\left({arg}\right)"


class log_softmax(sp.Function):  # noqa: N801
    """Row-wise log-softmax of the output pre-activations: z_j - log sum_k e^{z_k}."""

    def _latex(self, printer: sp.printing.latex.LatexPrinter) -> str:
        arg = printer._print(self.args[0])
        return rf"\log\operatorname{{softmax}}\left({arg}\right)"


def _single_exp(expr: sp.Expr) -> sp.Expr | None:
    """The argument w of the only exp(w) in expr, or None."""
    exps = {e for e in expr.atoms(sp.exp)}
    if len(exps) != 1:
        return None
    return next(iter(exps)).args[0]


def _is_zero(expr: sp.Expr) -> bool:
    try:
        return sp.cancel(sp.together(expr)) == 0
    except (sp.PolynomialError, TypeError, ValueError):
        return False


def _stable_node(node: sp.Expr) -> sp.Expr:
    """A stable form of one node, or the node itself when no rule applies."""
    if isinstance(node, sp.log):
        arg = node.args[0]
        if isinstance(arg, sigmoid):  # log σ(u) = -softplus(-u)
            return -softplus(-arg.args[0])
        if isinstance(arg, sp.cosh):  # log cosh u = |u| + softplus(-2|u|) - log 2
            u = sp.Abs(arg.args[0])
            return u + softplus(-2 * u) - sp.log(2)
        if arg.has(sigmoid) and not arg.has(sp.exp):
            sig = next(iter(arg.atoms(sigmoid)))
            if _is_zero(arg - (1 - sig)):  # log(1 - σ(u)) = -softplus(u)
                return -softplus(sig.args[0])
        w = _single_exp(arg)
        if w is not None and not arg.has(sigmoid):
            if _is_zero(arg - (1 + sp.exp(w))):
                return softplus(w)
            if _is_zero(arg - 1 / (1 + sp.exp(w))):
                return -softplus(w)
            if _is_zero(arg - sp.exp(w) / (1 + sp.exp(w))):
                return -softplus(-w)
        return node
    if (node.is_Pow or node.is_Mul) and not node.has(sp.log):
        w = _single_exp(node)
        if w is None:
            return node
        for u in (w, -w):
            if _is_zero(node - 1 / (1 + sp.exp(-u))):
                return sigmoid(u)
        if node.is_Mul:  # c / (1 + e^{-u}) = c σ(u): keep the factor, swap the rest
            rest = sp.Mul(*[f for f in node.args if not f.has(sp.exp)])
            core = sp.Mul(*[f for f in node.args if f.has(sp.exp)])
            if rest != 1:
                for u in (w, -w):
                    if _is_zero(core - 1 / (1 + sp.exp(-u))):
                        return rest * sigmoid(u)
    return node


def stabilize(expr: sp.Expr) -> sp.Expr:
    """Rewrite overflow-prone subexpressions, outermost first, into sigmoid / softplus."""
    if expr.is_Atom:
        return expr
    new = _stable_node(expr)
    if new != expr:
        return (
            new.func(*[stabilize(arg) for arg in new.args]) if not new.is_Atom else new
        )
    args = [stabilize(arg) for arg in expr.args]
    if args == list(expr.args):
        return expr
    rebuilt = expr.func(*args)
    again = _stable_node(rebuilt)
    return again
