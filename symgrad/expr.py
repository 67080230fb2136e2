"""The safe parser for custom activation and loss expressions written in a spec.

Spec text never reaches eval, `sympify` or `parse_expr` (all three call eval). The text is
parsed with `ast`, every node is checked against a whitelist of node types, names and
functions, and the SymPy expression is built here, node by node, under limits on length,
depth, size, literal magnitude and constant exponents, so that a hostile string fails fast.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

import sympy as sp

from .errors import ExpressionError, echo
from .functions import sigmoid

MAX_LENGTH = 500  # characters
MAX_DEPTH = 40  # nested nodes
MAX_NODES = 400
MAX_LITERAL = 1e6  # absolute value of a number literal or a named parameter
MIN_LITERAL = 1e-12  # smallest nonzero absolute value (5e-324 would underflow in code)
MAX_EXPONENT = 64  # absolute value of a constant exponent
# what the derivation will cost, checked once the expression is built:
MAX_DEGREE = 64  # polynomial degree, counting nested powers: ((z+1)**8)**16 is 128
MAX_NESTING = 6  # functions applied to functions: exp(tanh(sigmoid(z))) is 3
MAX_KINKS = 8  # abs, sign, max, min, relu: each can double the pieces of a rule
KINKS = (sp.Abs, sp.sign, sp.Max, sp.Min)


def _relu(x: sp.Expr) -> sp.Expr:
    return sp.Max(0, x)


# name in the spec -> (arity, builder)
FUNCTIONS: dict[str, tuple[int, object]] = {
    "exp": (1, sp.exp),
    "log": (1, sp.log),
    "sqrt": (1, sp.sqrt),
    "abs": (1, sp.Abs),
    "sign": (1, sp.sign),
    "tanh": (1, sp.tanh),
    "sinh": (1, sp.sinh),
    "cosh": (1, sp.cosh),
    "sin": (1, sp.sin),
    "cos": (1, sp.cos),
    "atan": (1, sp.atan),
    "erf": (1, sp.erf),
    "sigmoid": (1, sigmoid),
    "relu": (1, _relu),
    "max": (2, sp.Max),
    "min": (2, sp.Min),
}
CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "e": sp.E}

_BINOPS = {
    ast.Add: lambda x, y: x + y,
    ast.Sub: lambda x, y: x - y,
    ast.Mult: lambda x, y: x * y,
    ast.Div: lambda x, y: x / y,
    ast.Pow: None,  # checked separately
}


def check_number(value: object) -> None:
    """Refuse a literal or parameter value outside the bounds code can hold exactly.

    Raises:
        ExpressionError: not a number, not finite, or |value| outside
            [MIN_LITERAL, MAX_LITERAL] (0 is allowed).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExpressionError(f"expected a number, found {echo(value)}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ExpressionError(f"expected a finite number, found {value!r}")
    if abs(value) > MAX_LITERAL:
        raise ExpressionError(
            f"number {echo(value)} is larger than {MAX_LITERAL:g} in magnitude"
        )
    if value and abs(value) < MIN_LITERAL:
        raise ExpressionError(
            f"number {echo(value)} is smaller than {MIN_LITERAL:g} in magnitude"
            " (write 0 if you mean zero)"
        )


def number(value: float | int) -> sp.Rational:
    """An exact SymPy number for a spec number: 0.1 becomes 1/10, as its decimal text says."""
    check_number(value)
    return sp.Rational(repr(value)) if isinstance(value, float) else sp.Integer(value)


def parse(
    text: str,
    variables: Mapping[str, sp.Symbol],
    params: Mapping[str, sp.Expr] | None = None,
) -> sp.Expr:
    """Parse `text` into a SymPy expression over `variables` and numeric `params`.

    Raises:
        ExpressionError: the text is not an allowed expression; the message says why.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"expected an expression string, found {echo(text)}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"expression is {len(text)} characters long; at most {MAX_LENGTH} are allowed"
        )
    if not text.strip():
        raise ExpressionError("expression is empty")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(
            f"not a valid expression: {exc.msg} at column {exc.offset}"
        ) from None
    names: dict[str, sp.Expr] = {**CONSTANTS, **(params or {}), **variables}
    builder = _Builder(names)
    expr = builder.build(tree.body, 1)
    if not expr.free_symbols & set(variables.values()):
        raise ExpressionError(
            "expression does not use " + " or ".join(sorted(variables)) + "; it must"
        )
    if expr.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
        raise ExpressionError(
            "expression is undefined (it simplifies to nan or infinity)"
        )
    check_cost(expr)
    return expr


def degree(e: sp.Expr) -> int:
    """An upper bound of e's polynomial degree, with each function call one generator.

    exp(k·u) counts as degree |k| (SymPy's polynomial code sees exp(u)**k), so
    exp(64*z) / (1 + exp(z)) is as dear as a degree-64 polynomial.
    """
    if e.is_Atom:
        return 1 if e.free_symbols else 0
    if e.is_Add:
        return max(degree(t) for t in e.args)
    if e.is_Mul:
        return sum(degree(f) for f in e.args)
    if e.is_Pow:
        inner = degree(e.base)
        if e.exp.is_Rational:
            return abs(int(e.exp.p)) * inner
        return inner + degree(e.exp)
    if isinstance(e, sp.exp):
        k = e.args[0].as_coeff_Mul()[0]
        return max(1, abs(int(k.p))) if k.is_Rational else 1
    return 1 if e.free_symbols else 0


def nesting(e: sp.Expr) -> int:
    """How deeply function calls nest in e (z**2 + 1: 0; exp(tanh(z)): 2)."""
    if e.is_Atom:
        return 0
    inner = max((nesting(x) for x in e.args), default=0)
    return inner + 1 if isinstance(e, sp.Function) else inner


def check_cost(expr: sp.Expr) -> None:
    """Refuse an expression whose derivation would not finish in seconds.

    Raises:
        ExpressionError: naming the limit and what was found.
    """
    for p in expr.atoms(sp.Pow):
        if p.exp.is_Rational and abs(p.exp) > MAX_EXPONENT:
            raise ExpressionError(
                f"the power {echo(str(p))} has exponent {p.exp} once nested powers are"
                f" combined; at most {MAX_EXPONENT} is allowed"
            )
    found = degree(expr)
    if found > MAX_DEGREE:
        raise ExpressionError(
            f"expression has polynomial degree up to {found} (nested powers multiply);"
            f" at most {MAX_DEGREE} is allowed, or the derivation would not finish"
        )
    found = nesting(expr)
    if found > MAX_NESTING:
        raise ExpressionError(
            f"functions are nested {found} deep; at most {MAX_NESTING} is allowed"
            " (each level multiplies the size of the derivative)"
        )
    found = sum(1 for n in sp.preorder_traversal(expr) if isinstance(n, KINKS))
    if found > MAX_KINKS:
        raise ExpressionError(
            f"expression has {found} abs/sign/max/min/relu; at most {MAX_KINKS} are"
            " allowed (each can double the pieces of its derivative)"
        )


class _Builder:
    """Builds SymPy from a whitelisted `ast` tree, counting nodes and depth."""

    def __init__(self, names: Mapping[str, sp.Expr]) -> None:
        self.names = names
        self.count = 0

    def build(self, node: ast.AST, depth: int) -> sp.Expr:
        self.count += 1
        if self.count > MAX_NODES:
            raise ExpressionError(f"expression has more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise ExpressionError(
                f"expression is nested deeper than {MAX_DEPTH} levels"
            )
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ExpressionError(
                    f"only numbers are allowed as literals, found {echo(value)}"
                )
            return number(value)
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                known = ", ".join(sorted(self.names))
                raise ExpressionError(
                    f"unknown name {echo(node.id)}; known names: {known}"
                )
            return self.names[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self.build(node.operand, depth + 1)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left = self.build(node.left, depth + 1)
            right = self.build(node.right, depth + 1)
            if isinstance(node.op, ast.Pow):
                return self._power(left, right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise ExpressionError("division by zero")
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        hint = (
            " (for a power write a**b, not a^b)"
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor)
            else ""
        )
        raise ExpressionError(
            f"{_describe(node)} is not allowed in an expression{hint}"
        )

    def _power(self, base: sp.Expr, exponent: sp.Expr) -> sp.Expr:
        if not exponent.free_symbols:
            # a constant exponent must be a small number: 9**9**9 would never finish
            if not exponent.is_Rational or abs(exponent) > MAX_EXPONENT:
                raise ExpressionError(
                    f"a constant exponent must be a number of size at most {MAX_EXPONENT}"
                )
            if base == 0 and exponent < 0:
                raise ExpressionError("division by zero")
        elif not base.free_symbols and not base.is_positive:
            raise ExpressionError(
                "a variable exponent needs a positive number as its base"
            )
        return base**exponent

    def _call(self, node: ast.Call, depth: int) -> sp.Expr:
        known = ", ".join(sorted(FUNCTIONS))
        if not isinstance(node.func, ast.Name):
            raise ExpressionError(
                f"only the functions {known} can be called, by name;"
                f" found a call of {echo(ast.unparse(node.func))}"
            )
        if node.func.id not in FUNCTIONS:
            raise ExpressionError(
                f"unknown function {echo(node.func.id)}; known functions: {known}"
            )
        if node.keywords:
            raise ExpressionError(f"{node.func.id}() takes no keyword arguments")
        arity, fn = FUNCTIONS[node.func.id]
        if len(node.args) != arity:
            raise ExpressionError(
                f"{node.func.id}() takes {arity} argument{'s' if arity > 1 else ''},"
                f" found {len(node.args)}"
            )
        args = [self.build(arg, depth + 1) for arg in node.args]
        return fn(*args)  # type: ignore[operator]


OPERATORS = {
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
}


def _describe(node: ast.AST) -> str:
    kinds = {
        ast.Attribute: "attribute access",
        ast.Subscript: "indexing",
        ast.Lambda: "a lambda",
        ast.Compare: "a comparison",
        ast.BoolOp: "a boolean operator",
        ast.IfExp: "a conditional",
    }
    for kind, text in kinds.items():
        if isinstance(node, kind):
            return text
    if isinstance(node, ast.BinOp):
        return f"the operator {OPERATORS.get(type(node.op), type(node.op).__name__)}"
    return f"a {type(node).__name__} node"
