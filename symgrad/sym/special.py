"""The special functions the generated modules carry: erf, and erfcx with log erfc,
e^{−x²}/erfc, erfc and log erf built on it (NumPy has none of them, the array-API
standard neither).

Their source is templates/erf*.py.jinja and templates/erfcx*.py.jinja, filled with
coefficients computed here exactly (erf's series) or in 40-digit arithmetic (erfcx's
Taylor polynomials), so the same symgrad writes the same bytes. `source` is what a module
gets; `numpy_helpers` runs the same NumPy source for derive's stability checks, so a form
is checked with the code that will compute it.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import jinja2
import mpmath

from ..cache import template_dir

ERF_TERMS = 56  # Kummer series terms: the tail is below 1e-17 relative for |x| < 2.5
ERF_DEPTH = 32  # continued fraction: erfc(x ≥ 2.5) to 1e-13 relative, so erf to 1 ulp
# erfcx: Taylor polynomials on [k, k + 1) for k < ERFCX_END (26 terms: the last term is
# below 1e-18 relative there), the continued fraction from ERFCX_END on (40 levels);
# within 3 ulp of mpmath over the real line in float64 (tests/test_probit.py)
ERFCX_END = 8
ERFCX_TERMS = 26
ERFCX_DEPTH = 40
# the printed calls built on it; _erfc and _log_erf only in modules that call them
ERFCX_HELPERS = frozenset({"_log_erfc", "_inv_erfcx", "_erfc", "_log_erf"})


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja2 environment of every template of a generated module, one a process
    (its compiled templates kept)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def erf_series() -> list[str]:
    """The coefficients of the modules' erf series, as literals: c_n = 2^n / (2n + 1)!!,
    exactly, then rounded once."""
    series, c = [], Fraction(1)
    for n in range(ERF_TERMS):
        series.append(repr(float(c)))
        c = c * 2 / (2 * n + 3)
    return series


@functools.cache
def erfcx_taylor() -> tuple[tuple[str, ...], ...]:
    """Per unit interval [k, k + 1), k < ERFCX_END, the Taylor coefficients of erfcx
    about x₀ = k + 1/2 as literals: c₀ = e^{x₀²} erfc(x₀), c₁ = 2x₀c₀ − 2/√π and
    (n + 1) c_{n+1} = 2x₀ c_n + 2 c_{n−1} (from erfcx' = 2x erfcx − 2/√π), in 40 digits,
    each rounded once."""
    rows = []
    with mpmath.workdps(40):
        for k in range(ERFCX_END):
            x0 = mpmath.mpf(2 * k + 1) / 2
            c = [mpmath.exp(x0 * x0) * mpmath.erfc(x0)]
            c.append(2 * x0 * c[0] - 2 / mpmath.sqrt(mpmath.pi))
            for n in range(1, ERFCX_TERMS - 1):
                c.append((2 * x0 * c[n] + 2 * c[n - 1]) / (n + 1))
            rows.append(tuple(repr(float(v)) for v in c))
    return tuple(rows)


def source(helpers: frozenset[str] | set[str], xp: bool = False) -> str:
    """The special functions a module's printed code calls (`helpers`: `_erf`,
    `_log_erfc`, `_inv_erfcx`, `_erfc`, `_log_erf`), NumPy or array-API: "" when it
    calls none."""
    suffix = "_xp" if xp else ""
    parts = []
    if "_erf" in helpers or helpers & ERFCX_HELPERS:
        parts.append(
            environment()
            .get_template(f"erf{suffix}.py.jinja")
            .render(
                erf_series=erf_series(),
                erf_depth=ERF_DEPTH,
                two_over_sqrt_pi=repr(2 / math.sqrt(math.pi)),
                sqrt_pi=repr(math.sqrt(math.pi)),
            )
            .strip()
        )
    if helpers & ERFCX_HELPERS:
        parts.append(
            environment()
            .get_template(f"erfcx{suffix}.py.jinja")
            .render(
                erfcx_taylor=erfcx_taylor(),
                erfcx_end=ERFCX_END,
                erfcx_depth=ERFCX_DEPTH,
                sqrt_pi=repr(math.sqrt(math.pi)),
                helpers=helpers,
            )
            .strip()
        )
    return "\n\n\n".join(parts)


@functools.cache
def numpy_helpers() -> dict[str, object]:
    """The NumPy module's special functions (_erf, _erfcx and those built on it), run
    from the same source."""
    import numpy as np  # here, not at the top: a cold generate needs none (lazy.py)

    scope: dict[str, object] = {"np": np}
    exec(source(ERFCX_HELPERS), scope)  # noqa: S102 - our own template, no spec text
    return {name: scope[name] for name in ("_erf", "_erfcx", *sorted(ERFCX_HELPERS))}
