"""The Plan as the report shows it: its statements as equations, its symbols named.

The report lists the batch computation from the Plan's statements (symgrad/plan.py), in
the order the generated code runs them, so that the report and the code cannot drift
apart. Each array symbol of the plan is named in LaTeX by its role and layer (naming.py:
Z^{[1]}, A^{[1]}, δ^{[1]}; a norm's values by the rule's names: μ^{[2]}, σ^{[2]},
X̂^{[2]}) and in text by its name in the generated code (Z1, Xhat2; δ1 for D1), as the
module's comments are.
"""

from __future__ import annotations

import functools

import sympy
from sympy import Symbol

from .. import layer_registry
from .. import naming as nm
from ..norm_rules import BETA, GAMMA, XHAT, G, H, NormRule
from ..norm_rules import text as rule_text
from ..plan import (
    BATCH,
    L2_GRAD,
    LOSS,
    Condition,
    Plan,
    Renew,
    Stmt,
    X,
    Y,
    arr,
    branch,
    flatten,
    resolve,
    section,
)
from ..sym.arrays import MatProduct
from .document import Eq, M, Math
from .notation import ARROW, partial
from .notation import LOSS as LOSS_MATH
from .printing import Latex, math

PLUS_EQ = Math(r"\mathrel{+}=", "+=")
EQUALS = Math("=", "=")

# a norm's values over the batch: matrices (one value per entry) in capitals
BATCH_TEX = {XHAT: r"\hat{X}", H: "H", G: "G", GAMMA: r"\gamma", BETA: r"\beta"}


def symbol_tex(sym: sympy.Symbol) -> str:
    """A norm rule's symbol in LaTeX: μ, σ, x̂, r_{1}; a word upright (var, ms)."""
    return name_tex(sym.name)


def name_tex(name: str) -> str:
    if name == "eps":
        return r"\epsilon"
    if name.endswith("bar") and len(name) > 3:  # an adjoint: \bar{\mu}, \overline{var}
        base = name_tex(name[:-3])
        short = len(base) == 1 or (base.startswith("\\") and "{" not in base)
        return rf"\bar{{{base}}}" if short else rf"\overline{{{base}}}"
    tex = sympy.latex(Symbol(name))
    if tex.isalpha() and len(tex) > 1:
        return rf"\mathrm{{{tex}}}"
    return tex


def layer_tex(base: str, l: int) -> str:  # noqa: E741
    """base with the layer's superscript: \\mu^{[2]}; r_{1} -> r^{[2]}_{1}."""
    head, sep, sub = base.partition("_")
    if sep and not head.startswith("\\") and sub.startswith("{"):
        return f"{head}^{{[{l}]}}_{sub}"
    return f"{base}^{{[{l}]}}"


def rule_symbols(rule: NormRule) -> list[sympy.Symbol]:
    """The values a norm computes: reductions, scales, x̂, h."""
    out = [s.target for s in rule.forward]
    out += [s.target for s in rule.backward if s.role == "upstream"]
    return out


class PlanView:
    """A Plan's statements as the report's equations."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        d = plan.derivation
        tex: dict[sympy.Symbol, str] = {X: nm.A(0), Y: nm.TARGET, BATCH: "m"}
        text: dict[sympy.Symbol, str] = {X: nm.A(0), Y: nm.TARGET, BATCH: "m"}
        tex[L2_GRAD], text[L2_GRAD] = nm.L2_COEFFICIENT
        for p in plan.params:
            name = p.name
            if name == nm.W(p.layer):
                tex[arr(name)] = nm.tex("W", p.layer)
            elif name == nm.b(p.layer):
                tex[arr(name)] = nm.tex("b", p.layer)
            elif name == nm.gamma(p.layer):
                tex[arr(name)] = nm.tex(r"\gamma", p.layer)
            elif name == nm.beta(p.layer):
                tex[arr(name)] = nm.tex(r"\beta", p.layer)
            text[arr(name)] = name
        for rule in d.layers:  # what each kind names beyond the roles
            tex.update(layer_registry.of(rule).names(rule, plan))
        for sym, (role, l) in plan.roles.items():
            text[sym] = nm.value_text(role, l) if role == "delta" else sym.name
            if sym in tex:
                continue
            if role == "a" and l == d.depth:
                tex[sym], text[sym] = nm.PREDICTIONS
            elif role == "back":
                tex[sym] = nm.tex("G", l)
            elif role == "r":  # a reduction lifted into a statement: Mean7_1
                k = sym.name.rpartition("_")[2]
                tex[sym] = rf"R^{{[{l}]}}_{{{k}}}"
            elif role == "norm":  # a value the report does not know: its code name
                tex[sym] = rf"\mathrm{{{sym.name}}}"
            else:
                tex[sym] = nm.value_tex(role, l)
        self.tex, self.text = tex, text
        self.arrays = frozenset(s for s, shape in plan.shapes.items() if shape)
        self.param_of = {g: p for p, g in plan.grads.items()}

    def symbol(self, role: str, l: int) -> sympy.Symbol:  # noqa: E741
        """The plan's value of a role and layer: symbol("back", 3) is G3."""
        return next(s for s, rl in self.plan.roles.items() if rl == (role, l))

    def name(self, sym: sympy.Symbol) -> Math:
        return Math(self.tex.get(sym, sym.name), self.text.get(sym, sym.name))

    def ex(
        self, e: sympy.Expr, tex: dict | None = None, text: dict | None = None
    ) -> Math:
        tex, text = {**self.tex, **(tex or {})}, {**self.text, **(text or {})}
        return math(e, tex, text, self.arrays, plan=True)

    def lhs(self, s: Stmt) -> Math:
        if s.target == LOSS:
            return LOSS_MATH
        if s.target in self.param_of:
            return partial(LOSS_MATH, self.name(arr(self.param_of[s.target])))
        return self.name(s.target)

    def eq(self, s: Stmt, tex: dict | None = None, text: dict | None = None) -> Eq:
        rel = PLUS_EQ if s.add else ARROW if isinstance(s, Renew) else EQUALS
        return Eq(self.lhs(s), (self.ex(s.expr, tex, text),), rel=rel)

    # ---------------------------------------------------------------- by layer

    def sections(self, l: int) -> set[str]:  # noqa: E741
        """The Plan's section ids of layer l: dense-3, norm-2, dropout-4; the output
        layer's statements are in "output" and, for its affine part, "dense-L"."""
        d = self.plan.derivation
        return {section(d.layer(l))} | ({"output"} if l == d.depth else set())

    def forward(self, l: int, part: str = "training") -> list[Stmt]:  # noqa: E741
        """Layer l's forward statements of one part of the plan's forward pass:
        "training" (the batch statistics, dropout's mask drawn), "running" (the running
        statistics renewed, in the step only) or "inference" (the running statistics
        used)."""
        items = self.plan.forward
        if part == "training":
            stmts = flatten(
                resolve(
                    items, dict.fromkeys(Condition, True) | {Condition.RUNNING: False}
                )
            )
        elif part == "running":
            stmts = branch(items, Condition.RUNNING, True)
        else:
            stmts = branch(items, Condition.TRAINING, False)
        sec = self.sections(l)
        return [s for s in stmts if s.section in sec]

    def backward(self, l: int) -> list[Stmt]:  # noqa: E741
        """What layer l's backward pass computes: its section's statements (less the
        gradient G^{[l]} that reaches it, computed by the layer above), and the gradient
        G^{[l-1]} it passes down."""
        sec, roles = self.sections(l), self.plan.roles
        return [
            s
            for s in self.plan.backward
            if roles.get(s.target) == ("back", l - 1)
            or (s.section in sec and roles.get(s.target) != ("back", l))
        ]

    @functools.cached_property
    def readers(self) -> dict[sympy.Symbol, int]:
        """How many statements read each symbol."""
        count: dict[sympy.Symbol, int] = {}
        for s in self.plan.statements:
            for sym in s.reads:
                count[sym] = count.get(sym, 0) + 1
        return count

    def backward_eqs(self) -> list[Eq]:
        """The backward pass in the order the generated code computes it.

        A gradient G^{[l]} = δ^{[l+1]} W^{[l+1]T} read only by the dense delta that
        follows it is shown inside it, as the textbook writes δ^{[l]} =
        (δ^{[l+1]} W^{[l+1]T}) ⊙ f'(Z^{[l]}).
        """
        stmts = list(self.plan.backward)
        roles = self.plan.roles
        tex: dict[sympy.Symbol, str] = {}
        text: dict[sympy.Symbol, str] = {}
        eqs = []
        for i, s in enumerate(stmts):
            role = roles.get(s.target)
            after = stmts[i + 1] if i + 1 < len(stmts) else None
            if (
                role is not None
                and role[0] == "back"
                and after is not None
                and roles.get(after.target) == ("delta", role[1])
                and isinstance(s.expr, MatProduct)
                and self.readers.get(s.target) == 1
                and s.target in after.reads
            ):
                inner = self.ex(s.expr, tex, text)
                tex[s.target] = rf"\left({inner.tex}\right)"
                text[s.target] = f"({inner.text})"
                continue
            eqs.append(self.eq(s, tex, text))
        return eqs


def rule_math(e: sympy.Expr, names: dict[sympy.Symbol, str] | None = None) -> Math:
    """A norm rule's expression in its own symbols (x, x̂, μ, σ, h, ...): LaTeX by the
    report's printer, text as reductions.text writes the rule."""
    tex = {s: symbol_tex(s) for s in e.atoms(Symbol)}  # with a Derivative's variable
    tex.update(names or {})
    return Math(Latex(tex).doprint(e), rule_text(e))


def rule_name(sym: sympy.Symbol) -> Math:
    return M(symbol_tex(sym), rule_text(sym))


__all__ = ["PlanView", "rule_math", "rule_name", "symbol_tex"]
