"""The operation count that picks among equal forms: one measure for every stage.

derive.py ranks an activation's derivative forms by it, norm_rules.py a norm's backward
rule, and the report orders a rule's terms by it. It counts the array operations that
evaluate an expression: a subtraction is one operation (not a negation plus an
addition), powers weigh more than products (so a·(1 − a), 2, beats a − a², 3), a
function call weighs 8, a group reduction is a pass over the group (3) plus its argument,
and constants (numbers, coefficients, and the symbols a caller names constant, such as a
norm's group size n) cost nothing, though a named constant in a product is one factor
more to multiply by.
"""

from __future__ import annotations

from collections.abc import Set

import sympy as sp

from .arrays import GroupReduction
from .functions import variables


def cost(e: sp.Expr, constants: Set[sp.Symbol] = frozenset()) -> int:
    """Array operations to evaluate e (constants: symbols that cost nothing)."""

    def varies(x: sp.Expr, ignoring: Set[sp.Symbol] = constants) -> bool:
        return bool(variables(x) - ignoring) or bool(x.atoms(GroupReduction))

    def count(x: sp.Expr) -> int:
        if x.is_Atom or not varies(x):
            return 0
        if isinstance(x, GroupReduction):
            return 3 + count(x.args[0])
        if x.is_Add:
            terms = [-t if t.could_extract_minus_sign() else t for t in x.args]
            negs = all(t.could_extract_minus_sign() for t in x.args)
            return len(terms) - 1 + int(negs) + sum(count(t) for t in terms)
        if x.is_Mul:  # a numeric coefficient is folded; a named constant is a factor
            factors = [f for f in x.args if varies(f, frozenset())]
            coeff = sp.Mul(*(f for f in x.args if not varies(f, frozenset())))
            n = len(factors) - 1 + (coeff not in (1, -1)) + (coeff == -1)
            return n + sum(count(f) for f in factors)
        if x.is_Pow:
            if x.exp == 2:
                return 2 + count(x.base)
            if x.exp == -1:
                return 1 + count(x.base)
            return 4 + count(x.base) + count(x.exp)
        if isinstance(x, sp.Piecewise):
            return 1 + sum(count(v) + count(c) for v, c in x.args)
        if isinstance(x, sp.Abs | sp.sign | sp.Max | sp.Min) or x.is_Relational:
            return 1 + sum(count(a) for a in x.args)
        if isinstance(x, sp.Function):
            return 8 + sum(count(a) for a in x.args)
        return 1 + sum(count(a) for a in x.args)

    return count(e)
