"""The safe parser for custom activation, loss and norm expressions written in a spec.

Spec text never reaches eval, `sympify` or `parse_expr` (all three call eval). The text is
parsed with `ast`, every node is checked against a whitelist of node types, names and
functions, and the SymPy expression is built here, node by node, under limits on length,
depth, size, literal magnitude and constant exponents, so that a hostile string fails fast.

A norm (`parse_norm`) is an expression in one group's values `x` that may also call the
group reductions `mean(e)`, `sum(e)` and `max(e)` (one argument: over the group, built as
GroupMean/GroupSum/GroupMax of arrays.py; `max(a, b)` with two stays the elementwise
maximum). A reduction's argument must vary over the group (use `x` outside any inner
reduction), and so must the norm itself; a norm without any reduction is allowed (its
rule is then elementwise).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

import sympy as sp

from ..errors import MAX_ECHO, ExpressionError, echo, printable
from .arrays import GroupMax, GroupMean, GroupReduction, GroupSum
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
KINKS = (sp.Abs, sp.sign, sp.Max, sp.Min, GroupMax)
MAX_REDUCTIONS = 8  # distinct group reductions in a norm: each adds a backward term
# exponentials stacked, each in the exponent of the next: exp(exp(z)) is 2, 9**9**9**z is
# 3. The derivation checks values at |z| up to 1000: e^(e^(e^1000)) has an exponent of
# 2^1443 bits, 9^(9^(9^6.3)) one of 2^3000000 bits (stability.MAX_ARGUMENT_BITS)
MAX_TOWER = 2
# reductions inside reductions in a norm: mean(x*mean(x*mean(x))) is 3. The norm's check
# writes each one out over a group of 3 values (reductions.Reference), so every level
# triples the expression SymPy differentiates and rewrites
MAX_REDUCTION_DEPTH = 3
MAX_WRITTEN = 400  # nodes of a norm written out over a group of 3 values
WRITTEN_GROUP = 3  # = reductions.CHECK_SIZE


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
    "erfc": (1, sp.erfc),
    "sigmoid": (1, sigmoid),
    "relu": (1, _relu),
    "max": (2, sp.Max),
    "min": (2, sp.Min),
}
CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "e": sp.E}
# norms only: the group reductions, by name and number of arguments (max(a, b) stays
# the elementwise maximum of FUNCTIONS)
REDUCTIONS: dict[str, dict[int, type[GroupReduction]]] = {
    "mean": {1: GroupMean},
    "sum": {1: GroupSum},
    "max": {1: GroupMax},
}
NORM_VARIABLE = "x"
NORM_X = sp.Symbol("x", real=True)  # one value of the group a norm acts on
# names a norm's derived rule gives its own values (norm_rules.py): not for parameters
RESERVED_NORM_NAMES = (
    *("x", "xhat", "g", "h", "n", "y", "gamma", "beta"),
    *("dx", "dgamma", "dbeta", "momentum", "running_mean", "running_var"),
)

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
    *,
    reductions: bool = False,
) -> sp.Expr:
    """Parse `text` into a SymPy expression over `variables` and numeric `params`.

    Args:
        reductions: allow the group reductions mean(e), sum(e), max(e) (norms).

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
    builder = _Builder(names, set(variables.values()), reductions)
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
    if reductions:
        _check_norm(expr, set(variables.values()))
    return expr


def names(text: str) -> frozenset[str]:
    """The names an expression's text reads (to find a named parameter it never uses);
    only parsed, never evaluated; text that does not parse reads none."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return frozenset()
    return frozenset(n.id for n in ast.walk(tree) if isinstance(n, ast.Name))


def parameter(name: str, value: float | int) -> sp.Expr:
    """The symbol a named norm parameter (eps) stands for in a derivation.

    Its sign is an assumption (eps > 0 makes sqrt(v + eps) positive), its value is kept by
    whoever evaluates the rule; a zero parameter is the number 0.
    """
    check_number(value)
    if value == 0:
        return sp.S.Zero
    return (
        sp.Symbol(name, positive=True) if value > 0 else sp.Symbol(name, negative=True)
    )


def parse_norm(text: str, params: Mapping[str, float | int] | None = None) -> sp.Expr:
    """Parse a norm: an expression in `x` with group reductions and named parameters.

    The text is checked once with the parameters' values (the numeric limits apply to
    them as to literals), then built with each parameter as a symbol (see `parameter`).

    Returns:
        The expression over `NORM_X`, GroupMean/GroupSum/GroupMax
        nodes and the parameter symbols.

    Raises:
        ExpressionError: as for `parse`, and for a parameter name that is taken, a
            reduction of a group constant, a norm that uses x only inside reductions,
            or more than MAX_REDUCTIONS distinct reductions.
    """
    params = dict(params or {})
    reserved = {*FUNCTIONS, *REDUCTIONS, *CONSTANTS}
    for key in params:
        if (
            not isinstance(key, str)
            or not key.isidentifier()
            or key.startswith("_")
            or key in reserved
        ):
            raise ExpressionError(
                f"parameter name {echo(key)} is not usable: it must be an identifier,"
                " not starting with _, other than a function or a constant"
            )
        if key in RESERVED_NORM_NAMES:
            raise ExpressionError(
                f"parameter name {echo(key)} is taken: the norm's derivation names its"
                f" own values {', '.join(RESERVED_NORM_NAMES)}"
            )
    variables = {NORM_VARIABLE: NORM_X}
    parse(text, variables, {k: number(v) for k, v in params.items()}, reductions=True)
    symbols = {k: parameter(k, v) for k, v in params.items()}
    return parse(text, variables, symbols, reductions=True)


def elementwise_part(e: sp.Expr) -> sp.Expr:
    """e with every group reduction replaced by one placeholder constant."""
    return e.replace(
        lambda n: isinstance(n, GroupReduction), lambda n: sp.Symbol("_reduced")
    )


def _check_norm(expr: sp.Expr, variables: set[sp.Symbol]) -> None:
    found = expr.atoms(GroupReduction)
    if len(found) > MAX_REDUCTIONS:
        raise ExpressionError(
            f"norm has {len(found)} different reductions; at most {MAX_REDUCTIONS} are"
            " allowed (each adds a term to the backward pass)"
        )
    for node in found:  # check_cost saw each reduction as one generator
        check_cost(node.args[0])
    depth = reduction_depth(expr)
    if depth > MAX_REDUCTION_DEPTH:
        raise ExpressionError(
            f"reductions are nested {depth} deep (mean/sum/max inside mean/sum/max);"
            f" at most {MAX_REDUCTION_DEPTH} are allowed (each level triples the"
            " expression the derivation checks): write statistics side by side where"
            " you can, as in (x - mean(x))/sqrt(mean((x - mean(x))**2) + eps)"
        )
    size = written_size(expr)
    if size > MAX_WRITTEN:
        raise ExpressionError(
            f"the norm written out over a group of {WRITTEN_GROUP} values has {size}"
            f" parts; at most {MAX_WRITTEN} are allowed (each reduction repeats its"
            " argument for every value): use fewer or smaller reductions, fewer"
            " nested inside others"
        )
    if not elementwise_part(expr).free_symbols & variables:
        raise ExpressionError(
            "the norm gives every element of the group the same value: x appears only"
            " inside mean/sum/max; use x elementwise too, e.g. x - mean(x)"
        )


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


def tower(e: sp.Expr) -> int:
    """How many exponentials are stacked in e, each in the exponent of the next: exp,
    sinh, cosh and a power with a variable exponent count one each (z**2: 0; exp(z): 1;
    exp(exp(z)): 2; z**z**z: 2; 9**9**9**z: 3). A function that bounds its value
    (tanh, sigmoid, ...) still counts the tower inside it: it must be evaluated."""
    memo: dict[sp.Basic, int] = {}

    def height(u: sp.Basic) -> int:
        if u.is_Atom:
            return 0
        if u not in memo:
            inner = max((height(v) for v in u.args), default=0)
            grows = isinstance(u, sp.exp | sp.sinh | sp.cosh) or (
                u.is_Pow and bool(u.exp.free_symbols)
            )
            memo[u] = inner + 1 if grows and u.free_symbols else inner
        return memo[u]

    return height(e)


def reduction_depth(e: sp.Expr) -> int:
    """How deeply group reductions nest in a norm (x - mean(x): 1)."""
    if e.is_Atom:
        return 0
    inner = max((reduction_depth(u) for u in e.args), default=0)
    return inner + 1 if isinstance(e, GroupReduction) else inner


def written_size(e: sp.Expr) -> int:
    """The parts of a norm written out over a group of WRITTEN_GROUP values: each
    reduction repeats its argument once per value (an upper bound: shared parts count
    every time)."""
    memo: dict[sp.Basic, int] = {}

    def size(u: sp.Basic) -> int:
        if u.is_Atom:
            return 1
        if u not in memo:
            inner = sum(size(v) for v in u.args)
            memo[u] = 1 + (
                WRITTEN_GROUP * inner if isinstance(u, GroupReduction) else inner
            )
        return memo[u]

    return size(e)


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
    found = tower(expr)
    if found > MAX_TOWER:
        raise ExpressionError(
            f"exponentials are stacked {found} high (exp, sinh, cosh or a power with a"
            f" variable exponent, each in the exponent of another); at most {MAX_TOWER}"
            " are allowed: e^(e^(e^2)) already overflows float64, and the values at the"
            " inputs the derivation checks are too large to compute"
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

    def __init__(
        self,
        names: Mapping[str, sp.Expr],
        variables: set[sp.Symbol] | None = None,
        reductions: bool = False,
    ) -> None:
        self.names = names
        self.variables = variables or set()
        self.functions: dict[str, dict[int, object]] = {
            k: {arity: fn} for k, (arity, fn) in FUNCTIONS.items()
        }
        if reductions:
            for k, by_arity in REDUCTIONS.items():
                self.functions[k] = {**by_arity, **self.functions.get(k, {})}
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
        known = ", ".join(sorted(self.functions))
        if not isinstance(node.func, ast.Name):
            raise ExpressionError(
                f"only the functions {known} can be called, by name;"
                f" found a call of {echo(ast.unparse(node.func))}"
            )
        name = node.func.id
        if name not in self.functions:
            raise ExpressionError(
                f"unknown function {echo(name)}; known functions: {known}"
            )
        if node.keywords:
            raise ExpressionError(f"{name}() takes no keyword arguments")
        by_arity = self.functions[name]
        if len(node.args) not in by_arity:
            # in a norm, min(e) is not a reduction: say how to write one
            hint = (
                " (the minimum over the group is -max(-e))"
                if name == "min" and 1 in self.functions["max"]
                else ""
            )
            raise ExpressionError(
                f"{name}() takes {_arities(by_arity)}, found {len(node.args)}{hint}"
            )
        fn = by_arity[len(node.args)]
        args = [self.build(arg, depth + 1) for arg in node.args]
        if isinstance(fn, type) and issubclass(fn, GroupReduction):
            if not elementwise_part(args[0]).free_symbols & self.variables:
                raise ExpressionError(
                    f"{name}({_snippet(ast.unparse(node.args[0]))}) reduces a value that is"
                    " the same for every element of the group; the argument of a"
                    " reduction must use x outside any inner reduction, as in"
                    " mean((x - mean(x))**2)"
                )
        return fn(*args)  # type: ignore[operator]


def _arities(by_arity: Mapping[int, object]) -> str:
    """'1 argument', '2 arguments', or for max in a norm '1 argument (the maximum over
    the group) or 2 (the elementwise maximum)'."""
    if len(by_arity) == 1:
        (n,) = by_arity
        return f"{n} argument{'s' if n > 1 else ''}"
    parts = []
    for n, fn in sorted(by_arity.items()):
        reduction = isinstance(fn, type) and issubclass(fn, GroupReduction)
        what = "the maximum over the group" if reduction else "the elementwise maximum"
        parts.append(f"{n} argument{'s' if n > 1 else ''} ({what})")
    return " or ".join(parts)


def _snippet(text: str) -> str:
    """Spec text quoted in a message: escaped, cut to MAX_ECHO characters."""
    text = printable(text)
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."


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
