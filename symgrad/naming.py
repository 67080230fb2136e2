"""Every generated identifier, in one place: the same names appear in code, comments and LaTeX.

Layers are numbered from 1; layer 0 is the input X. A value of the computation has a
*role* (pre-activation, activation, mask, delta, ...) and a layer; `value(role, l)` gives
its name in code (Z1), `value_tex` in LaTeX (Z^{[1]}) and `value_text` in comments and
the terminal (Z1, δ1). Parameters and their gradients are named here too.

The in-place step keeps values in work arrays named by the role of what they hold over
the step, never by one value they held once (`h1` holds layer 1's pre-activation and
then its activation):

    h{l}, h{l}_2, ...   layer l's values in the forward pass
    g{l}, g{l}_2, ...   its gradients in the backward pass
    r{l}, ...           its row statistics, one number per example (m, 1)
    mask{l}             f'(Z) as 0/1, kept from the forward pass for the backward pass
    tmp{l}, tmp{l}_2    scratch for one expression at a time
    update_scratch      the optimizer update's scratch: one array per parameter, of its
                        shape (scratch = update_scratch[k] in the update of parameter k)
    ones, ones_{n}      vectors of ones: Σₙ over the batch and Σⱼ over a row as products
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    """How a value of one role is written; each format takes the layer as {l}."""

    code: str
    tex: str
    text: str
    what: str  # a few words: what the value is
    family: str  # the work arrays it lives in (in place): h, g, r or mask


ROLES: dict[str, Role] = {
    "z": Role("Z{l}", "Z^{{[{l}]}}", "Z{l}", "pre-activation", "h"),
    "a": Role("A{l}", "A^{{[{l}]}}", "A{l}", "activation", "h"),
    "mask": Role("M{l}", "M^{{[{l}]}}", "M{l}", "f'(Z) as 0/1", "mask"),
    "softplus": Role(
        "SP{l}",
        r"\operatorname{{softplus}}(-Z^{{[{l}]}})",
        "SP{l}",
        "softplus(−Z)",
        "h",
    ),
    "rowmax": Role("Zmax{l}", r"\max_j Z^{{[{l}]}}", "Zmax{l}", "row max of Z", "r"),
    "shifted": Role("S{l}", "S^{{[{l}]}}", "S{l}", "Z minus its row max", "h"),
    "exp": Role("E{l}", "E^{{[{l}]}}", "E{l}", "e^S", "h"),
    "expsum": Role("Esum{l}", r"\Sigma_j E^{{[{l}]}}", "Esum{l}", "row sums of E", "r"),
    "logsum": Role(
        "logEsum{l}", r"\log \Sigma_j E^{{[{l}]}}", "logEsum{l}", "log of Esum", "r"
    ),
    "logsoftmax": Role("LS{l}", r"\log \hat{{Y}}", "LS{l}", "log-softmax of Z", "h"),
    "log1m": Role(
        "L1M{l}", r"\log(1 - \hat{{Y}})", "L1M{l}", "log(1 − softmax(Z))", "h"
    ),
    "second": Role(
        "S2max{l}",
        r"\max_j^{{(2)}} S^{{[{l}]}}",
        "S2max{l}",
        "second largest of S",
        "r",
    ),
    "othersum": Role(
        "Osum{l}",
        r"\Sigma_{{j \neq \max}} e^{{S - S_2}}",
        "Osum{l}",
        "row sums of e^(S − S2max) below the max",
        "r",
    ),
    "psum": Role(
        "Psum{l}", r"\Sigma_k P^{{[{l}]}}", "Psum{l}", "row sums of ∂ℓ/∂LS", "r"
    ),
    "qsum": Role(
        "Qsum{l}", r"\Sigma_k Q^{{[{l}]}}", "Qsum{l}", "row sums of Q·ŷ/(1 − ŷ)", "r"
    ),
    "qbig": Role(
        "Qbig{l}", "Q^{{[{l}]}}_*", "Qbig{l}", "Q·ŷ at an output above 1/2", "r"
    ),
    "lbig": Role(
        "L1Mbig{l}",
        r"\log(1 - \hat{{Y}}_*)",
        "L1Mbig{l}",
        "L1M at an output above 1/2",
        "r",
    ),
    "h": Role("H{l}", "H^{{[{l}]}}", "H{l}", "Ŷ ⊙ ∂ℓ/∂Ŷ", "g"),
    "hsum": Role("Hsum{l}", r"\Sigma_k H^{{[{l}]}}", "Hsum{l}", "row sums of H", "r"),
    "delta": Role("D{l}", r"\delta^{{[{l}]}}", "δ{l}", "∂L/∂Z", "g"),
    "back": Role("G{l}", r"\delta^{{[{l}]}}_A", "G{l}", "∂L/∂A", "g"),
    "f": Role("F{l}", "F^{{[{l}]}}", "F{l}", "f(Z) under a residual sum", "h"),
    "keep": Role(
        "K{l}", "K^{{[{l}]}}", "K{l}", "dropout's kept values, scaled", "mask"
    ),
    "norm": Role("N{l}", "N^{{[{l}]}}", "N{l}", "a value of a norm", "h"),
    "r": Role("R{l}", "R^{{[{l}]}}", "R{l}", "a reduction", "r"),
    # images (conv2d, pooling, flatten)
    "image": Role("I{l}", "I^{{[{l}]}}", "I{l}", "the flat input as an image", "h"),
    "padded": Role(
        "XP{l}", r"\tilde{{X}}^{{[{l}]}}", "XP{l}", "the input, zero-padded", "h"
    ),
    "winmask": Role(
        "MX{l}",
        "M^{{[{l}]}}",
        "MX{l}",
        "1 at each window's first maximum",
        "mask",
    ),
    "cols": Role(
        "GC{l}",
        r"\delta^{{[{l}]}}_{{\mathrm{{win}}}}",
        "GC{l}",
        "the gradient at each window entry",
        "g",
    ),
    "gpad": Role(
        "GP{l}",
        r"\tilde{{\delta}}^{{[{l}]}}_A",
        "GP{l}",
        "the gradient at the padded input",
        "g",
    ),
}


def value(role: str, l: int) -> str:  # noqa: E741 - the layer index, as in the math
    """The code name of a value: value("z", 2) == "Z2"."""
    return ROLES[role].code.format(l=l)


def value_tex(role: str, l: int) -> str:  # noqa: E741
    return ROLES[role].tex.format(l=l)


def value_text(role: str, l: int) -> str:  # noqa: E741
    return ROLES[role].text.format(l=l)


def W(l: int) -> str:  # noqa: N802 - the math's name
    return f"W{l}"


def b(l: int) -> str:
    return f"b{l}"


def Z(l: int) -> str:  # noqa: N802
    """Pre-activation Z^l = A^{l-1} W^l + b^l, shape (m, n_l)."""
    return value("z", l)


def A(l: int) -> str:  # noqa: N802
    """Activation A^l = f(Z^l); A^0 is the input."""
    return INPUT if l == 0 else value("a", l)


def D(l: int) -> str:  # noqa: N802
    """Delta δ^l = ∂L/∂Z^l (already divided by the batch size m)."""
    return value("delta", l)


def gamma(l: int) -> str:  # noqa: E741
    """A norm's gain γ (ones at the start)."""
    return f"gamma{l}"


def beta(l: int) -> str:  # noqa: E741
    """A norm's shift β (zeros at the start)."""
    return f"beta{l}"


def running(statistic: str, l: int) -> str:  # noqa: E741
    """Batchnorm's running statistic of layer l: mean{l}, var{l} (buffers in params)."""
    return f"{statistic}{l}"


def norm_value(name: str, l: int) -> str:  # noqa: E741
    """A norm rule's value in layer l, by the rule's own name: mu -> Mu3, xhat ->
    Xhat3, r1 -> R1_3 (an underscore before the layer when the name ends in a digit)."""
    base = name[:1].upper() + name[1:]
    return f"{base}_{l}" if base[-1].isdigit() else f"{base}{l}"


def grad(param: str) -> str:
    """The gradient of a parameter in code: dW1, db1."""
    return f"d{param}"


def dW(l: int) -> str:  # noqa: N802
    return grad(W(l))


def db(l: int) -> str:
    return grad(b(l))


INPUT = "X"
TARGET = "Y"
LOSS = "L"
LOG_SOFTMAX = "LS"  # log-softmax of the output pre-activation (derive's symbol `ls`)
BATCH = "m"  # the number of examples in a batch
SCALE = "scale"  # what the output delta is multiplied by: 1/m, or η/m in sgd's step
L2 = "L2"  # the module constant: the l2 coefficient
L2_GRAD = "l2_grad"  # the l2 coefficient as the gradient statements read it
FINITE = "squares"  # the step's check before the update: L + Σ g² over the gradients
LR_T = "lr_t"  # the learning rate of this step, under a schedule
GRAD_NORM = "grad_norm"  # the global 2-norm of the gradients (clipping)
CLIP = "clip"  # the clipping factor min(1, c / (‖g‖ + 1e-6))
CLIP_NORM = "clip_norm"  # the spec's c
CLIP_RATIO = "clip_ratio"  # clip / l2: the clipped gradient plus l2·W, written in place

# work arrays of the in-place step (see the module docstring)
FAMILIES = {
    "h": "layer {l}'s values (forward pass)",
    "g": "layer {l}'s gradients (backward pass)",
    "r": "layer {l}'s row statistics, one per example",
    "mask": "f'(Z{l}) as 0/1",
    "tmp": "scratch",
}


def buffer(family: str, l: int, k: int = 1) -> str:  # noqa: E741
    """The k-th work array of a family for layer l: h1, h1_2, g3, tmp2_3."""
    return f"{family}{l}" + (f"_{k}" if k > 1 else "")


ONES_BATCH = "ones"  # (m,): Σ over the batch as the product 1ᵀ D


def update_scratch(k: int) -> str:
    """The k-th scratch array of the optimizer's update of one parameter: scratch,
    scratch_2 (its optimizer entry's temporaries)."""
    return "scratch" + (f"_{k}" if k > 1 else "")


def update_ratio(state: str) -> str:
    """The per-step ratio c₁/c₂ of a moving average x ← c₁x + c₂u written in place as
    c₂(r x + u): m1_ratio."""
    return f"{state}_ratio"


def update_work(scratch: str) -> str:
    """The work entry that holds a temporary's array for every parameter (a dict):
    update_scratch, from which the update of parameter k takes update_scratch[k]."""
    return f"update_{scratch}"


def ones_row(n: int) -> str:
    """(n, 1) ones: Σⱼ over a row of n entries as the product E·1."""
    return f"ones_{n}"


# LaTeX counterparts (superscript [l] marks the layer, as in most course notes)
def tex(name: str, l: int | None = None) -> str:  # noqa: E741
    return name if l is None else f"{name}^{{[{l}]}}"


# ---- math names: each quantity as (LaTeX, unicode text), for the report and docstrings
#
# The text forms are those of the generated module's docstring (δ2, Ŷ, A1ᵀ); a layer's
# quantity is tex(name, l) in LaTeX and name + l in text, its unit j a subscript.

INDEX_TEXT = {"i": "ᵢ", "j": "ⱼ", "k": "ₖ", "n": "ₙ"}  # unit and example indices

EXAMPLE_INPUT = ("x", "x")  # one example's input; a batch is A(0) = X
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
L2_COEFFICIENT = (r"\lambda", "λ")

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
