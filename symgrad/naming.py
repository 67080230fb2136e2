"""Every generated identifier, in one place: the same names appear in code, comments and LaTeX.

Layers are numbered from 1; layer 0 is the input X.
"""

from __future__ import annotations


def W(l: int) -> str:  # noqa: N802 - the math's name
    return f"W{l}"


def b(l: int) -> str:
    return f"b{l}"


def Z(l: int) -> str:  # noqa: N802
    """Pre-activation Z^l = A^{l-1} W^l + b^l, shape (m, n_l)."""
    return f"Z{l}"


def A(l: int) -> str:  # noqa: N802
    """Activation A^l = f(Z^l); A^0 is the input."""
    return "X" if l == 0 else f"A{l}"


def D(l: int) -> str:  # noqa: N802
    """Delta δ^l = ∂L/∂Z^l (already divided by the batch size m)."""
    return f"D{l}"


def dW(l: int) -> str:  # noqa: N802
    return f"dW{l}"


def db(l: int) -> str:
    return f"db{l}"


TARGET = "Y"
LOG_SOFTMAX = "LS"  # log-softmax of the output pre-activation


# LaTeX counterparts (superscript [l] marks the layer, as in most course notes)
def tex(name: str, l: int | None = None) -> str:
    return name if l is None else f"{name}^{{[{l}]}}"


# ---- math names: each quantity as (LaTeX, unicode text), for the report and docstrings
#
# The text forms are those of the generated module's docstring (δ2, Ŷ, A1ᵀ); a layer's
# quantity is tex(name, l) in LaTeX and name + l in text, its unit j a subscript.

INDEX_TEXT = {"i": "ᵢ", "j": "ⱼ", "k": "ₖ", "n": "ₙ"}  # unit and example indices

INPUT = ("x", "x")  # one example's input; a batch is A(0) = X
PREDICTION = (r"\hat{y}", "ŷ")  # the network's output for one example
PREDICTIONS = (r"\hat{Y}", "Ŷ")  # a batch of them
TARGET_ONE = ("y", "y")
EXAMPLE_LOSS = (r"\ell", "ℓ")  # the loss of one example
BATCH_LOSS = ("L", "L")  # the mean over the batch (plus the l2 term)
DELTA = (r"\delta", "δ")  # ∂ℓ/∂z of a layer; D(l) in the code
WEIGHT = ("w", "w")  # one entry of W(l)
BIAS = ("b", "b")
PRE_ACTIVATION = ("z", "z")
ACTIVATION = ("a", "a")
SOFTMAX_SUM = ("S", "S")  # Σ_i exp(z_i): softmax's normalizer
SOFTMAX_H = ("h", "h")  # ŷ ⊙ ∂ℓ/∂ŷ: softmax's Jacobian-vector product
TRANSPOSE = (r"\mathsf{T}", "ᵀ")
ONES_ROW = (r"\mathbf{1}^{\mathsf{T}}", "1ᵀ")  # sums a batch's rows
L2 = (r"\lambda", "λ")

# optimizers: parameter, gradient, step count and hyperparameters
PARAMETER = ("p", "p")
GRADIENT = ("g", "g")
STEP = ("t", "t")
LEARNING_RATE = (r"\eta", "η")
MOMENTUM = (r"\mu", "μ")
VELOCITY = ("v", "v")
FIRST_MOMENT = (r"\mathbf{m}", "m")
SECOND_MOMENT = (r"\mathbf{v}", "v")
FIRST_MOMENT_HAT = (r"\hat{\mathbf{m}}", "m̂")
SECOND_MOMENT_HAT = (r"\hat{\mathbf{v}}", "v̂")
BETA1 = (r"\beta_{1}", "β₁")
BETA2 = (r"\beta_{2}", "β₂")
EPSILON = (r"\epsilon", "ε")

# functions with a symbol of their own; any other activation is named by its name
FUNCTIONS = {
    "sigmoid": (r"\sigma", "σ"),
    "tanh": (r"\tanh", "tanh"),
    "identity": (r"\operatorname{id}", "id"),
    "softmax": (r"\operatorname{softmax}", "softmax"),
    "log_softmax": (r"\log\operatorname{softmax}", "log_softmax"),
    "softplus": (r"\operatorname{softplus}", "softplus"),
    "relu": (r"\operatorname{relu}", "relu"),
}
