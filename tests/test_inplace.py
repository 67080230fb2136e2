"""symgrad.printers.inplace: in-place NumPy lines compute what the printed expression computes."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import sympy as sp

from symgrad.printers.inplace import Emitter, Scratch, array
from symgrad.sym.arrays import ColSum, MatProduct, RowMax, RowMean, RowSum, Transposed
from symgrad.sym.code import FUNCTIONS, NumPyCode
from symgrad.sym.functions import sigmoid, softplus

Z, A, Y, D = (array(n) for n in ("Z", "A", "Y", "D"))
SCALE = array("scale")


def _sigmoid(z, out=None):
    with np.errstate(over="ignore"):
        out = np.exp(np.negative(z, out=out), out=out)
    out += 1
    return np.reciprocal(out, out=out)


def run(lines: list[str], arrays: dict[str, np.ndarray]) -> dict[str, object]:
    env = {
        "np": np,
        "_sigmoid": _sigmoid,
        "_erf": np.vectorize(math.erf),
        "dt": np.float64,
        "scale": 0.37,
        **{k: v.copy() for k, v in arrays.items()},
    }
    exec("\n".join(lines), env)
    return env


def printed(expr: sp.Expr, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The reference value: SymPy's own lambdify, independent of symgrad's printer."""
    symbols = sorted(expr.free_symbols, key=str)
    functions = {
        "erf": np.vectorize(math.erf),
        "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
        "softplus": lambda x: np.logaddexp(0, x),
    }
    f = sp.lambdify(symbols, expr, modules=[functions, "numpy"])
    env = run([], arrays)
    with np.errstate(all="ignore"):
        value = f(*[env[s.name] for s in symbols])
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (5, 4))


def inputs(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (5, 4)
    arrays = {k: rng.uniform(-2, 2, shape) for k in ("Z", "Y", "D")}
    arrays["A"] = rng.uniform(0.05, 0.95, shape)
    for name in ("O", "tmp", "tmp_2", "tmp_3", "tmp_4", "tmp_5", "tmp_6"):
        arrays[name] = np.full(shape, np.nan)
    return arrays


CASES = [
    (A * (1 - A), "O", None, ["np.subtract(1, A, out=O)", "O *= A"]),
    (1 - A**2, "A", A, ["np.square(A, out=A)", "np.subtract(1, A, out=A)"]),
    (sp.tanh(Z), "Z", Z, ["np.tanh(Z, out=Z)"]),
    (sp.Max(0, Z), "Z", Z, ["np.maximum(Z, 0, out=Z)"]),
    (sigmoid(Z), "Z", Z, ["_sigmoid(Z, out=Z)"]),
    (softplus(Z), "Z", Z, ["np.logaddexp(0, Z, out=Z)"]),
    (sp.Piecewise((0, A <= 0), (1, True)), "O", None, ["np.greater(A, 0, out=O)"]),
    (
        D * sp.Piecewise((0, A <= 0), (1, True)),
        "D",
        D,
        ["np.greater(A, 0, out=tmp)", "D *= tmp"],
    ),
    (
        # leaky ReLU, in place, in the form the plan gives it (derive.factored)
        Z * sp.Piecewise((sp.Rational(1, 10), Z <= 0), (1, True)),
        "Z",
        Z,
        ["np.less_equal(Z, 0, out=tmp)", "tmp *= -0.9", "tmp += 1", "Z *= tmp"],
    ),
    (
        # ... and as it is written: printed as it is, no factor taken out
        sp.Piecewise((Z / 10, Z <= 0), (Z, True)),
        "Z",
        Z,
        ["Z[...] = np.where(Z <= 0, 0.1 * Z, Z)"],
    ),
    (D * A * (1 - A), "D", D, ["D *= A", "np.subtract(1, A, out=tmp)", "D *= tmp"]),
    (SCALE * (A - Y), "D", None, ["np.subtract(A, Y, out=D)", "D *= scale"]),
    (SCALE * (A - Y) / 2, "D", None, ["np.subtract(A, Y, out=D)", "D *= 0.5 * scale"]),
    (-A - Y, "O", None, ["np.add(A, Y, out=O)", "np.negative(O, out=O)"]),
    (1 / (1 + sp.exp(-Z)), "O", None, None),
    (Z / (sp.Abs(Z) + 1), "O", None, None),
    ((Z * (1 - sigmoid(Z)) + 1) * sigmoid(Z), "O", None, None),
    (sp.Piecewise((A + 1, A <= 0), (1, True)), "O", None, None),  # np.where fallback
    (Z * sp.exp(-(Z**2) / 2) + sp.erf(Z), "O", None, None),  # _erf fallback
    (Y * softplus(-Z) + (1 - Y) * softplus(Z), "O", None, None),
    (2**Z + Z**3 - sp.sqrt(A) / A**2, "O", None, None),
    (sp.Piecewise((sp.exp(Z), Z < 0), (Z**2 + 1, True)), "O", None, None),
    (sp.Min(Z, A) * sp.sign(Z) + sp.atan(Z) * sp.cos(Z), "O", None, None),
]


@pytest.mark.parametrize("expr, dest, owner, expected", CASES, ids=lambda x: str(x))
def test_lines_compute_the_printed_expression(expr, dest, owner, expected):
    arrays = inputs()
    lines = Emitter(NumPyCode(), [SCALE]).into(expr, dest, Scratch(""), owner)
    assert lines is not None
    if expected is not None:
        assert lines == expected
    env = run(lines, arrays)
    np.testing.assert_allclose(env[dest], printed(expr, arrays), rtol=1e-14, atol=1e-15)


def test_owner_read_after_its_array_is_written_is_refused():
    # exp(Z) goes to Z's array first; Z² would then read the overwritten Z
    expr = sp.exp(Z) + Z**2
    assert Emitter(NumPyCode()).into(expr, "Z", Scratch(""), owner=Z) is None
    lines = Emitter(NumPyCode()).into(expr, "O", Scratch(""))
    arrays = inputs()
    np.testing.assert_allclose(
        run(lines, arrays)["O"], printed(expr, arrays), rtol=1e-14
    )


def _random_expr(rng: random.Random, depth: int) -> sp.Expr:
    if depth == 0 or rng.random() < 0.2:
        return rng.choice([Z, A, Y, sp.Rational(rng.randint(1, 9), rng.randint(1, 4))])
    kind = rng.randrange(9)
    x = _random_expr(rng, depth - 1)
    if kind == 0:
        return x + _random_expr(rng, depth - 1)
    if kind == 1:
        return x * _random_expr(rng, depth - 1)
    if kind == 2:
        return x - _random_expr(rng, depth - 1)
    if kind == 3:
        return x / (2 + A * A + _random_expr(rng, depth - 1) ** 2)
    if kind == 4:
        return rng.choice([sp.tanh, sigmoid, softplus, sp.sin, sp.atan, sp.Abs])(x)
    if kind == 5:
        return x ** rng.choice([2, 3, -1, -2])
    if kind == 6:
        return sp.Max(x, _random_expr(rng, depth - 1))
    if kind == 7:
        return sp.Piecewise((rng.choice([0, sp.Rational(1, 3)]), x <= 0), (1, True))
    return sp.Piecewise((x, A <= sp.Rational(1, 2)), (Z * 3, True))


@pytest.mark.parametrize("seed", range(40))
def test_random_expressions_in_place_or_refused(seed):
    rng = random.Random(seed)
    expr = _random_expr(rng, 4)
    if not expr.free_symbols & {Z, A, Y}:
        expr = expr + Z
    arrays = inputs(seed)
    with np.errstate(all="ignore"):
        want = printed(expr, arrays)
        for dest, owner in (("O", None), ("Z", Z)):
            lines = Emitter(NumPyCode()).into(expr, dest, Scratch(""), owner)
            if lines is None:
                assert owner is not None
                continue
            got = run(lines, arrays)[dest]
            np.testing.assert_allclose(
                got, want, rtol=1e-12, atol=1e-12, err_msg=str(lines)
            )


def test_total_sums_products_with_vdot():
    pool = Scratch("3")
    em = Emitter(NumPyCode())
    assert em.total(-A * Y, pool, "L", "Y.size") == ["L = -np.vdot(A, Y)"]
    lines = em.total((A - Y) ** 2 / 2, pool, "L", "Y.size")
    assert lines == ["np.subtract(A, Y, out=tmp3)", "L = 0.5 * np.vdot(tmp3, tmp3)"]
    expr = Y * softplus(-Z) + (1 - Y) * softplus(Z) + sp.log(2)
    lines = em.total(expr, pool, "L", "Y.size")
    arrays = {**inputs(), "tmp3": np.empty((5, 4)), "tmp3_2": np.empty((5, 4))}
    assert pool.made == ["tmp3", "tmp3_2"]
    np.testing.assert_allclose(run(lines, arrays)["L"], printed(expr, arrays).sum())


# -- array nodes of a plan: products and reductions, written with out= -----------------

W = array("W")  # (4, 4): a weight matrix
ARRAY_FUNCTIONS = {  # the nodes' meaning, as NumPy computes it (the reference)
    "MatProduct": np.dot,
    "Transposed": np.transpose,
    "RowSum": lambda x: np.sum(x, axis=1, keepdims=True),
    "RowMean": lambda x: np.mean(x, axis=1, keepdims=True),
    "RowMax": lambda x: np.max(x, axis=1, keepdims=True),
    "ColSum": lambda x: np.sum(x, axis=0),
}


def _reference(expr: sp.Expr, arrays: dict[str, np.ndarray]) -> np.ndarray:
    symbols = sorted(expr.free_symbols, key=str)
    f = sp.lambdify(symbols, expr, modules=[ARRAY_FUNCTIONS, "numpy"])
    return f(*[arrays[s.name] for s in symbols])


def _array_inputs() -> dict[str, np.ndarray]:
    arrays = inputs()
    arrays["W"] = np.random.default_rng(3).uniform(-1, 1, (4, 4))
    arrays["ones"] = np.ones(5)
    arrays["ones_4"] = np.ones((4, 1))
    arrays["R"] = np.full((5, 1), np.nan)
    arrays["c"] = np.full(4, np.nan)
    return arrays


ARRAY_CASES = [
    # (expr, dest, owner, expected lines)
    (MatProduct(Z, W) + A, "O", None, ["np.dot(Z, W, out=O)", "O += A"]),
    (MatProduct(D, Transposed(W)) * A, "D", None, ["np.dot(D, W.T, out=D)", "D *= A"]),
    (RowSum(Z), "R", None, ["np.dot(Z, ones_4, out=R)"]),
    (RowMean(Z), "R", None, ["np.dot(Z, ones_4, out=R)", "R /= 4"]),
    (RowMax(Z), "R", None, ["np.maximum.reduce(Z, axis=1, keepdims=True, out=R)"]),
    (ColSum(D), "c", None, ["np.dot(ones, D, out=c)"]),
    (
        ColSum(D * A),
        "c",
        None,
        ["np.multiply(A, D, out=tmp)", "np.dot(ones, tmp, out=c)"],
    ),
    (RowSum(Z * A - Y), "R", None, None),
]


@pytest.mark.parametrize("expr, dest, owner, expected", ARRAY_CASES, ids=str)
def test_array_nodes_are_written_in_place(expr, dest, owner, expected):
    arrays = _array_inputs()
    em = Emitter(NumPyCode())
    em.shapes = {k: v.shape for k, v in arrays.items()}
    want = _reference(expr, arrays)
    lines = em.into(expr, dest, Scratch(""), owner)
    if expected is not None:
        assert lines == expected
    np.testing.assert_allclose(run(lines, arrays)[dest], want, rtol=1e-14)


def test_a_reduction_inside_an_expression_is_the_plans_to_lift():
    # its value has another shape than the statement's scratch arrays
    with pytest.raises(ValueError, match="RowSum inside an expression"):
        Emitter(NumPyCode()).into(Z - A * RowSum(Z), "O", Scratch(""))


def test_an_update_without_scratch_is_factored_and_donors_lend_their_arrays():
    # the optimizer's update runs over parameters of every shape: no scratch array;
    # the derivation writes m1 ← β m1 + (1 − β) g as (1 − β)(r m1 + g), r = β/(1 − β)
    # computed once a step (optimizers.averages_in_place), and the emitter prints it as
    # given; g, read for the last time, holds (1 − β₂) g² for the second moment
    from symgrad import optimizers

    adam = optimizers.OPTIMIZERS["adam"]
    _, rule = optimizers.statements(adam, adam.defaults())
    rule, ratios = optimizers.averages_in_place(adam, rule)
    (ratio,) = ratios
    b1 = adam.setting("beta1").symbol
    assert sp.simplify(ratio.expr - b1 / (1 - b1)) == 0
    beta, beta2 = sp.Rational(9, 10), sp.Rational(999, 1000)
    m1, m2, g = array("m1"), array("m2"), array("g")
    assert rule[0].target.name == "m1" and rule[0].expr.has(g)
    first_rule = rule[0].expr
    arrays = {
        k: np.random.default_rng(i).uniform(0.1, 1, (3, 2))
        for i, k in enumerate(("m1", "m2", "g"))
    }
    em = Emitter(NumPyCode(), scalars=[b1, ratio.target])
    first = em.into(first_rule, "m1", Scratch("", new=False), owner=m1)
    assert first == ["m1 *= m1_ratio", "m1 += g", "m1 *= 1 - beta1"]
    first = ["beta1 = 0.9", "m1_ratio = beta1 / (1 - beta1)", *first]
    with pytest.raises(ValueError, match="no scratch"):  # the printer folds nothing
        em.into(beta * m1 + (1 - beta) * g, "m1", Scratch("", new=False), owner=m1)
    second = em.into(
        beta2 * m2 + (1 - beta2) * g**2,
        "m2",
        Scratch("", new=False),
        owner=m2,
        donors=[g],
    )
    assert "np.square(g, out=g)" in second
    env = run(first + second, arrays)
    np.testing.assert_allclose(
        env["m1"], 0.9 * arrays["m1"] + 0.1 * arrays["g"], rtol=1e-14
    )
    want2 = 0.999 * arrays["m2"] + 0.001 * arrays["g"] ** 2
    np.testing.assert_allclose(env["m2"], want2, rtol=1e-14)
    with pytest.raises(ValueError, match="no scratch"):  # the caller's bug, loudly
        em.into(
            m1 * sp.exp(m2) + g * sp.exp(m1), "m1", Scratch("", new=False), owner=m1
        )


@pytest.mark.parametrize("function", sorted(FUNCTIONS, key=lambda f: f.__name__))
def test_one_function_table_drives_both_printers(function):
    name = FUNCTIONS[function]
    assert NumPyCode().doprint(function(Z)) == f"np.{name}(Z)"
    assert Emitter(NumPyCode()).into(function(Z), "O", Scratch("")) == [
        f"np.{name}(Z, out=O)"
    ]


def test_the_in_place_printer_dispatches_on_the_node_class_with_a_destination():
    # a SymPy Printer: _print_<Class>(expr, dest); an unknown node falls back to the
    # printed expression assigned into dest (correct, only allocating)
    em = Emitter(NumPyCode())
    assert isinstance(em, sp.printing.printer.Printer)
    assert em.into(sp.erf(Z), "O", Scratch("")) == ["O[...] = _erf(Z)"]
