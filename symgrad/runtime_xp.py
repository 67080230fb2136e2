"""The runtime of an array-API module (`<name>_xp.py`): the part that is the same in all.

A module written by `symgrad generate SPEC --target array-api` is its derived part (the
network's constants and the functions printed from its plan by printers/xp_module.py)
followed by this file, copied verbatim from the end of the configuration block on. It
runs on the arrays it is given — NumPy, array-api-strict, PyTorch (CPU or CUDA), CuPy,
JAX (also inside jax.jit), Dask (also on a cluster) — and imports no array library: the
namespace comes from the inputs (array_api_compat.array_namespace when that package is
installed, else x.__array_namespace__()). NumPy is imported inside init_params,
draw_noise and fit only, for the host generator that makes a seed give the NumPy
module's numbers.

The functions of the derived part take the namespace and checked arrays of one dtype:

    _forward(xp, params, X, training, noise) -> Ŷ
    _loss(xp, params, X, Y, training, noise) -> the loss, a 0-d array
    _loss_and_grad(xp, params, X, Y, noise) -> (loss, grads, statistics)
    _update(xp, params, grads, state) -> (params, state)

Everything is functional: results are new arrays, no input is written (JAX arrays are
immutable and the standard has no out=). Checks come in two kinds: static ones (keys,
shapes, dtypes, one library, the batch size) always run, also while jax.jit traces;
value checks (NaN/inf, the targets' range, class labels) need the values, so they run
when those are at hand and are skipped on JAX tracers and Dask arrays (fit runs them
once, before training). The configuration block below holds placeholder values, so
that this file imports, lints and tests on its own (tests/test_runtime_xp.py).
"""

# the shared runtime: a generated module has its code instead, before this file's,
# configured by the module's constants; this file alone runs it on its placeholders
from symgrad.runtime_shared import (
    _KEYS,
    _SHAPES,
    _batch_ranges,
    _fit_counts,
    _fit_options,
    _initial_values,
    _train,
    _training_batch,
    _validation,
    _y_shape_error,
)

# --- configuration: each generated module has its own constants and derived part ---
NAME = "runtime_xp"
LAYER_SIZES = (2, 1)  # input width first
INPUT_SHAPE = None  # an image input's (C, H, W); X may then be (m, C, H, W)
LOSS = "mse"
OPTIMIZER = {"name": "sgd", "learning_rate": 0.01}
L2 = 0.0
PARAM_NAMES = ("W1", "b1")  # the trainable arrays: grads and optimizer moments
PARAM_SHAPES = {"W1": (2, 1), "b1": (1,)}
BUFFER_NAMES = ()  # state arrays kept in params (batchnorm's running statistics)
BUFFER_SHAPES = {}
INIT = {"W1": ("glorot_uniform", 2, 1), "b1": ("zeros",)}  # also for the buffers
TASK = "values"  # what predict returns: "classes" | "binary" | "values"
TARGETS = "real"  # what Y holds: "simplex" | "unit_interval" | "real"
LABELS = False  # integer class labels (m,) are accepted for Y
MOMENTS = ()  # the optimizer's arrays per parameter in the state, e.g. ("m", "v")
DROPOUT = False  # training with noise (or an rng) drops units
NOISE = {}  # dropout's keep-masks: name -> width (noise[name] has shape (m, width))
MIN_BATCH = 1  # examples a training batch needs (2 with batchnorm: a variance)
CHECK_FINITE = True


def _forward(xp, params, X, training, noise):
    return X @ params["W1"] + params["b1"]


def _loss(xp, params, X, Y, training, noise):
    R = X @ params["W1"] + params["b1"] - Y
    return xp.sum(R * R) / (2 * X.shape[0])


def _loss_and_grad(xp, params, X, Y, noise):
    R = X @ params["W1"] + params["b1"] - Y
    D = R / X.shape[0]
    loss = xp.sum(R * R) / (2 * X.shape[0])
    return loss, {"W1": X.T @ D, "b1": xp.sum(D, axis=0)}, {}


def _update(xp, params, grads, state):
    lr = OPTIMIZER["learning_rate"]
    new = dict(params)
    for k in PARAM_NAMES:
        new[k] = params[k] - lr * grads[k]
    return new, {"t": state["t"] + 1}


def learning_rate(t):
    """The learning rate of optimizer step t (printed from the spec's schedule)."""
    return OPTIMIZER["learning_rate"]


# --- end of configuration ---


# The array-API module's own runtime, after the shared one: the same in every such
# module symgrad writes (symgrad/runtime_xp.py), configured by the constants above.

try:  # standard namespaces for PyTorch, CuPy, Dask and NumPy 1.x arrays
    import array_api_compat as _compat
except ImportError:  # then arrays with __array_namespace__ only (NumPy 2, JAX, strict)
    _compat = None

# --- namespace, device, values at hand -------------------------------------------------


def _namespace(arrays, what):
    """The one array namespace of `arrays` (a TypeError naming `what` if not)."""
    if _compat is not None:
        try:
            return _compat.array_namespace(*arrays)
        except TypeError as exc:
            raise TypeError(
                f"{what} must be arrays of one array library ({exc}); this module "
                "never moves data between libraries or devices: convert it first, "
                "e.g. xp.asarray(X, device=...)"
            ) from None
    spaces = []
    for a in arrays:
        get = getattr(a, "__array_namespace__", None)
        if get is None:
            raise TypeError(
                f"{what} must be arrays of the array API standard, found "
                f"{type(a).__name__} (PyTorch, CuPy and Dask arrays need "
                'array-api-compat: pip install "symgrad[array-api]")'
            )
        space = get()
        if all(space is not s for s in spaces):
            spaces.append(space)
    if len(spaces) != 1:
        raise TypeError(f"{what} must be arrays of one array library, found {spaces}")
    return spaces[0]


def _device(x):
    return _compat.device(x) if _compat is not None else x.device


def _is_dask(x):
    return _compat is not None and _compat.is_dask_array(x)


def _known(flag):
    """bool(flag) for a 0-d boolean array, or None when its value is not at hand.

    Not at hand: under jax.jit (a tracer: bool() raises a TypeError) and on Dask arrays
    (bool() would compute the graph, and the whole pipeline that made X, per call).
    """
    if _is_dask(flag):
        return None
    try:
        return bool(flag)
    except TypeError:
        return None


def _is_float(xp, dtype):
    return dtype == xp.float32 or dtype == xp.float64


# --- checks ----------------------------------------------------------------------------


def _check_params(params):
    """(xp, dtype) of params, after checking their keys, shapes and dtype.

    Static checks only (they hold for JAX tracers too). The keys are compared as a
    set: jax.jit rebuilds a dict argument with its keys sorted.
    """
    if not isinstance(params, dict):
        raise TypeError(
            f"params must be a dict with keys {list(_KEYS)}, "
            f"found {type(params).__name__}"
        )
    if params.keys() != set(_KEYS):
        raise ValueError(
            f"params must be a dict with keys {list(_KEYS)}, "
            f"found {sorted(params, key=str)}"
        )
    arrays = [params[k] for k in _KEYS]
    xp = _namespace(arrays, "params")
    for k, a in zip(_KEYS, arrays, strict=True):
        if tuple(a.shape) != _SHAPES[k]:
            raise ValueError(
                f"params[{k!r}] must have shape {_SHAPES[k]}, found {tuple(a.shape)}"
            )
    dtype = arrays[0].dtype
    if not _is_float(xp, dtype) or any(a.dtype != dtype for a in arrays):
        found = ", ".join(sorted({str(a.dtype) for a in arrays}))
        raise ValueError(f"params must be all float32 or all float64, found {found}")
    return xp, dtype


def _same_library(xp, a, name):
    if _namespace([a], name) is not xp:
        raise TypeError(
            f"{name} is a {type(a).__module__}.{type(a).__name__} array but params "
            f"are {xp.__name__} arrays: convert it first, e.g. "
            f"xp.asarray({name}, device=...)"
        )


def _real(xp, a, name, dtype):
    """a as an array of dtype, if it holds real numbers (bool, int or float)."""
    if a.dtype != dtype:
        if not xp.isdtype(a.dtype, ("bool", "integral", "real floating")):
            raise TypeError(
                f"{name} must hold real numbers (bool, int or float), "
                f"found dtype {a.dtype}"
            )
        a = xp.astype(a, dtype)
    return a


def _features(xp, X, dtype):
    """X (m, n_in) of dtype; shapes checked, values not (see _prepare); an image
    input's (m, C, H, W) taken as rows, row-major."""
    _same_library(xp, X, "X")
    if INPUT_SHAPE is not None and X.ndim == 4 and tuple(X.shape[1:]) == INPUT_SHAPE:
        X = xp.reshape(X, (X.shape[0], LAYER_SIZES[0]))
    if X.ndim != 2 or X.shape[1] != LAYER_SIZES[0]:
        raise ValueError(
            f"X must have shape (m, {LAYER_SIZES[0]}), found {tuple(X.shape)}"
        )
    m = X.shape[0]
    known = isinstance(m, int)  # Dask: nan rows after boolean indexing
    if not known:
        raise ValueError(
            f"X has an unknown number of rows ({m}): the loss is a mean over them "
            "(for a Dask array, call X.compute_chunk_sizes() first)"
        )
    return _real(xp, X, "X", dtype)


def _targets(xp, Y, m, dtype, check):
    """(Y as a (m, n_out) array of dtype, a 0-d flag: its values are valid, or None
    when not `check`).

    Y holds what TARGETS says: rows on the simplex (entries ≥ 0 summing to 1), values
    in [0, 1] (0/1 labels or probabilities), or any real numbers; with LABELS it may
    be integer class labels of shape (m,), and with one output unit shape (m,).
    """
    if m == 0:
        raise ValueError(
            f"X has no examples (shape (0, {LAYER_SIZES[0]})): "
            "the loss is a mean over at least one example"
        )
    _same_library(xp, Y, "Y")
    if not xp.isdtype(Y.dtype, ("bool", "integral", "real floating")):
        raise TypeError(
            f"Y must hold real numbers (bool, int or float), found dtype {Y.dtype}"
        )
    n = LAYER_SIZES[-1]
    if Y.ndim == 1 and Y.shape[0] == m and LABELS:
        return _one_hot(xp, Y, m, dtype, check)
    if Y.ndim == 1 and Y.shape[0] == m and n == 1:
        Y = xp.reshape(Y, (m, 1))
    if tuple(Y.shape) != (m, n):
        raise _y_shape_error(Y.shape, m)
    given = Y.dtype
    Y = _real(xp, Y, "Y", dtype)
    if not check:
        return Y, None
    if TARGETS == "simplex":
        # entries ≥ 0 and row sums 1 within _simplex_tolerance: implies finite, one
        # check for both
        ok = xp.logical_not(xp.any(_off_simplex(xp, Y, given)))
    elif TARGETS == "unit_interval":
        ok = xp.all((Y >= 0) & (Y <= 1))  # implies finite
    else:
        ok = xp.all(xp.isfinite(Y))
    return Y, ok


def _simplex_tolerance(xp, dtype, given):
    """√ε of the coarser of Y's dtype as given and the params' dtype."""
    eps = xp.finfo(dtype).eps
    if xp.isdtype(given, "real floating"):
        eps = max(eps, xp.finfo(given).eps)
    return eps**0.5


def _off_simplex(xp, Y, given):
    """Per row: an entry < 0, or a sum off 1 by more than _simplex_tolerance (NaN too)."""
    tol = _simplex_tolerance(xp, Y.dtype, given)
    on = xp.all(Y >= 0, axis=1) & (xp.abs(xp.sum(Y, axis=1) - 1) <= tol)
    return xp.logical_not(on)


def _one_hot(xp, labels, m, dtype, check):
    """(class labels (m,) as one-hot rows of dtype, a 0-d flag: all labels valid, or
    None when not `check`); whole-number floats are labels too."""
    n = LAYER_SIZES[-1]
    if xp.isdtype(labels.dtype, "bool"):
        labels = xp.astype(labels, dtype)
    ok = None
    if check:
        ok = xp.all((labels >= 0) & (labels < n))
        if xp.isdtype(labels.dtype, "real floating"):
            ok = ok & xp.all(xp.floor(labels) == labels)  # NaN too
    classes = xp.arange(n, dtype=labels.dtype, device=_device(labels))
    Y = xp.astype(xp.reshape(labels, (m, 1)) == classes, dtype)
    return Y, ok


def _refuse(xp, X, Y, labels, given):
    """Raise the ValueError that says which value of X or Y failed the checks."""
    if not bool(xp.all(xp.isfinite(X))):
        raise ValueError(
            "X contains NaN or inf (set CHECK_FINITE = False to skip this check)"
        )
    n = LAYER_SIZES[-1]
    if labels is not None:
        bad = (labels < 0) | (labels >= n)
        if xp.isdtype(labels.dtype, "real floating"):
            bad = bad | (xp.floor(labels) != labels)
        i = int(xp.argmax(xp.astype(bad, xp.int8)))
        found = float(labels[i])
        raise ValueError(
            f"labels must be {labels.shape[0]} integers in [0, {n}), "
            f"found {int(found) if found.is_integer() else found} at Y[{i}]"
        )
    if not bool(xp.all(xp.isfinite(Y))):
        raise ValueError(
            "Y contains NaN or inf (set CHECK_FINITE = False to skip this check)"
        )
    if TARGETS == "simplex":
        bad = _off_simplex(xp, Y, given)
        i = int(xp.argmax(xp.astype(bad, xp.int8)))
        total = float(xp.sum(Y[i, ...]))
        raise ValueError(
            f"the loss {LOSS} takes target rows on the simplex (entries ≥ 0 "
            f"summing to 1 within {_simplex_tolerance(xp, Y.dtype, given):.2g}): its "
            f"derived gradient Ŷ - Y assumes it; found a bad row Y[{i}] (sum "
            f"{total:.8g}); class labels can be passed as integers of shape (m,)"
        )
    raise ValueError(
        f"the loss {LOSS} takes targets in [0, 1] (0/1 labels or probabilities)"
    )


def _prepare(params, X, Y=None, *, force=False):
    """(xp, X, Y) checked: X (m, n_in) and Y (m, n_out) of the params' dtype.

    The value checks (CHECK_FINITE) cost one synchronisation: their flags are and-ed
    into one 0-d array first. They are skipped when the values are not at hand
    (jax.jit, Dask) unless `force` (fit: once, before training).
    """
    xp, dtype = _check_params(params)
    X = _features(xp, X, dtype)
    # Dask: not even built (each graph node costs ~0.5 ms on the client)
    check = CHECK_FINITE and (force or not _is_dask(X))
    labels = Y if LABELS and getattr(Y, "ndim", None) == 1 else None
    given = getattr(Y, "dtype", None)  # before the cast: the simplex's tolerance
    ok = None
    if Y is not None:
        Y, ok = _targets(xp, Y, X.shape[0], dtype, check)
    if check:
        flag = xp.all(xp.isfinite(X))
        if ok is not None:
            flag = flag & ok
        valid = bool(flag) if force else _known(flag)
        if valid is False:
            _refuse(xp, X, Y, labels, given)
    return xp, X, Y


# --- dropout's noise -------------------------------------------------------------------


def draw_noise(params, X, rng):
    """Dropout's noise for a batch X: {name: uniform numbers in [0, 1), shape
    (m, NOISE[name])}, drawn on the host from the NumPy Generator `rng` in the
    params' dtype (the draws of the NumPy module's masks, in the same order), then
    put where X is (its library and device; on Dask, X's row chunks). {} without
    dropout. For jax.jit, make noise with jax.random.uniform instead (see NOISE).
    """
    import numpy as np

    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a NumPy Generator (np.random.default_rng(seed)), "
            f"found {type(rng).__name__}"
        )
    xp, dtype = _check_params(params)
    _same_library(xp, X, "X")
    m = X.shape[0]
    host = np.float32 if xp.finfo(dtype).bits == 32 else np.float64
    noise = {}
    for name, width in NOISE.items():
        u = rng.random((m, width), dtype=host)
        if _is_dask(X):  # in X's row chunks, so that each worker keeps its rows
            import dask.array as da  # loaded already: X is a Dask array

            noise[name] = da.from_array(u, chunks=(X.chunks[0], width))
        else:
            noise[name] = xp.asarray(u, dtype=dtype, device=_device(X))
    return noise


def _noise(xp, dtype, m, noise, rng, X, params, training, dropout):
    """The checked noise of a call (None: no dropout).

    Training a network with dropout needs its masks: noise, or an rng to draw it
    from; without either it is refused, unless dropout=False says to train without
    dropout (a silent fallback would train a network the spec does not describe).
    """
    if rng is not None and noise is not None:
        raise ValueError("pass noise or rng, not both")
    if dropout is not True and dropout is not False:
        raise TypeError(f"dropout must be True or False, found {dropout!r}")
    if not dropout and (rng is not None or noise is not None):
        raise ValueError("dropout=False trains without masks: pass no noise or rng")
    if not training or not DROPOUT or not dropout:
        return None
    if rng is not None:
        return draw_noise(params, X, rng)
    if noise is None:
        raise ValueError(
            f"this network has dropout ({', '.join(NOISE)}): training needs its masks' "
            "noise. Pass rng=np.random.default_rng(seed), or noise={name: uniform "
            "numbers in [0, 1) of shape (m, NOISE[name])} (under jax.jit: "
            "jax.random.uniform; see draw_noise), or dropout=False to train without "
            "dropout"
        )
    if not isinstance(noise, dict) or noise.keys() != NOISE.keys():
        found = sorted(noise, key=str) if isinstance(noise, dict) else type(noise)
        raise ValueError(
            f"noise must be a dict with keys {sorted(NOISE)} (dropout's uniform "
            f"numbers, see draw_noise), found {found}"
        )
    checked = {}
    for name, width in NOISE.items():
        u = noise[name]
        _same_library(xp, u, f"noise[{name!r}]")
        if tuple(u.shape) != (m, width):
            raise ValueError(
                f"noise[{name!r}] must have shape ({m}, {width}), "
                f"found {tuple(u.shape)}"
            )
        if not xp.isdtype(u.dtype, "real floating"):
            raise TypeError(
                f"noise[{name!r}] must hold uniform floats in [0, 1), found {u.dtype}"
            )
        checked[name] = xp.astype(u, dtype) if u.dtype != dtype else u
    if CHECK_FINITE:  # their values, when at hand (not under jax.jit, not on Dask)
        ok = None
        for u in checked.values():
            within = xp.all((u >= 0) & (u < 1))
            ok = within if ok is None else ok & within
        if ok is not None and _known(ok) is False:
            name = next(
                n for n, u in checked.items() if not bool(xp.all((u >= 0) & (u < 1)))
            )
            u = checked[name]
            raise ValueError(
                f"noise[{name!r}] must hold uniform numbers in [0, 1) (dropout keeps a "
                f"unit where u ≥ rate), found values in [{float(xp.min(u))}, "
                f"{float(xp.max(u))}] (set CHECK_FINITE = False to skip this check)"
            )
    return checked


# --- the functions of the network ------------------------------------------------------


def forward(params, X, *, training=False, noise=None, rng=None, dropout=True):
    """The network's output Ŷ, shape (m, LAYER_SIZES[-1]), an array of X's library.

    training=True computes it as training does: batch statistics instead of running
    ones (batchnorm), and dropout with `noise` (or noise drawn from the NumPy
    Generator `rng`, see draw_noise): with dropout, training needs one of them, or
    dropout=False to leave the masks out. A network with neither batchnorm nor
    dropout computes the same either way.
    """
    xp, X, _ = _prepare(params, X)
    if training:
        _training_batch(X.shape[0])
    noise = _noise(xp, X.dtype, X.shape[0], noise, rng, X, params, training, dropout)
    return _forward(xp, params, X, training, noise)


def loss(params, X, Y, *, training=False, noise=None, rng=None, dropout=True):
    """The mean loss over the batch (plus the l2 term, if any): a 0-d array of X's
    library (float() it).

    loss(params, X, Y, training=True, noise=noise) is the function whose gradient
    loss_and_grad(params, X, Y, noise=noise) returns.
    """
    xp, X, Y = _prepare(params, X, Y)
    if training:
        _training_batch(X.shape[0])
    noise = _noise(xp, X.dtype, X.shape[0], noise, rng, X, params, training, dropout)
    return _loss(xp, params, X, Y, training, noise)


def loss_and_grad(params, X, Y, *, noise=None, rng=None, dropout=True):
    """(loss, grads): a 0-d array and a dict with the keys PARAM_NAMES, the shapes and
    dtype of params. The loss is the one of training (batch statistics; with dropout,
    masks from noise or an rng: one of them is needed, or dropout=False)."""
    xp, X, Y = _prepare(params, X, Y)
    _training_batch(X.shape[0])
    noise = _noise(xp, X.dtype, X.shape[0], noise, rng, X, params, True, dropout)
    L, grads, _ = _loss_and_grad(xp, params, X, Y, noise)
    return L, grads


# what the shared runtime asks of this one (see symgrad/runtime_shared.py)


def _output(xp, params, X):
    return _forward(xp, params, X, False, None)


def _inference_loss(xp, params, X, Y):
    return float(_loss(xp, params, X, Y, False, None))


def _as_index(xp, flags):
    index = xp.__array_namespace_info__().default_dtypes()["indexing"]
    return xp.astype(flags, index)


def init_params(seed=0, xp=None, device=None, dtype=None):
    """Fresh parameters as arrays of namespace `xp` (NumPy's by default) on `device`,
    a dict with the keys PARAM_NAMES + BUFFER_NAMES.

    Drawn with NumPy's default_rng(seed) on the host, in INIT order, then moved with
    xp.asarray(..., device=): a seed gives the NumPy module's parameters, bit for bit.
    dtype defaults to the namespace's default float (float64 for NumPy, float32 for
    PyTorch and for JAX without jax_enable_x64). xp may be a library (torch,
    dask.array): array-api-compat gives its standard namespace.
    """
    import numpy as np

    if xp is None:
        xp = np
    if not hasattr(xp, "__array_namespace_info__"):
        what = getattr(xp, "__name__", type(xp).__name__)
        if not callable(getattr(xp, "asarray", None)):
            raise TypeError(
                f"xp must be an array library or array API namespace (numpy, torch, "
                f"jax.numpy, cupy, dask.array, array_api_strict), found {what}"
            )
        if _compat is None:
            raise TypeError(
                f"{what} is not an array API namespace: "
                'install array-api-compat (pip install "symgrad[array-api]")'
            )
        try:  # torch, dask, NumPy 1: wrapped
            xp = _compat.array_namespace(xp.asarray(0.0))
        except TypeError:
            raise TypeError(
                f"xp must be an array library or array API namespace (numpy, torch, "
                f"jax.numpy, cupy, dask.array, array_api_strict), found {what}"
            ) from None
    if dtype is None:
        dtype = xp.__array_namespace_info__().default_dtypes(device=device)
        dtype = dtype["real floating"]
    if not _is_float(xp, dtype):
        raise ValueError(
            f"dtype must be {xp.__name__}'s float32 or float64, "
            f"found {getattr(dtype, '__name__', dtype)}"
        )
    params = {
        name: xp.asarray(host, dtype=dtype, device=device)
        for name, host in _initial_values(seed).items()
    }
    made = params[_KEYS[0]].dtype
    if made != dtype:  # JAX without x64: float32, and only a warning
        raise ValueError(
            f"{xp.__name__} made {made} arrays when asked for {dtype} "
            "(JAX: jax.config.update('jax_enable_x64', True) first)"
        )
    return params


# --- training --------------------------------------------------------------------------


def init_state(params):
    """Optimizer state for `update` and `train_step`: the step count "t" (a 0-d
    integer array, so that the whole step can run under jax.jit) and the optimizer's
    arrays per parameter (MOMENTS: none for sgd, "velocity" for momentum, "m" and "v"
    for adam), zeros like the params."""
    xp, _ = _check_params(params)
    state = {"t": xp.asarray(0, device=_device(params[PARAM_NAMES[0]]))}
    for name in MOMENTS:
        state[name] = {k: xp.zeros_like(params[k]) for k in PARAM_NAMES}
    return state


def _check_arrays(xp, arrays, dtype, where):
    if not isinstance(arrays, dict) or arrays.keys() != set(PARAM_NAMES):
        found = sorted(arrays, key=str) if isinstance(arrays, dict) else type(arrays)
        raise ValueError(
            f"{where} must be a dict with keys {list(PARAM_NAMES)}, found {found}"
        )
    for k in PARAM_NAMES:
        a = arrays[k]
        if _namespace([a], f"{where}[{k!r}]") is not xp:
            raise TypeError(f"{where}[{k!r}] is not an array of the params' library")
        if tuple(a.shape) != PARAM_SHAPES[k] or a.dtype != dtype:
            raise ValueError(
                f"{where}[{k!r}] must have shape {PARAM_SHAPES[k]} and dtype {dtype}, "
                f"found {tuple(a.shape)} {a.dtype}"
            )


def _check_state(xp, state, dtype):
    keys = {"t", *MOMENTS}
    if not isinstance(state, dict) or state.keys() != keys:
        found = sorted(state, key=str) if isinstance(state, dict) else type(state)
        raise ValueError(
            f"state must be made by init_state(params) for this module's optimizer, "
            f"{OPTIMIZER['name']}, with keys {sorted(keys)}; found {found}"
        )
    t = state["t"]
    if getattr(t, "shape", None) != () or not xp.isdtype(t.dtype, "integral"):
        raise TypeError("state['t'] must be a 0-d integer array (the step count)")
    for name in MOMENTS:
        _check_arrays(xp, state[name], dtype, f"state[{name!r}]")


def update(params, grads, state):
    """(params, state) after one step of the module's optimizer: new arrays; params,
    grads and state are not changed. The running statistics in params stay as they
    are (train_step updates them).

    Only static checks (keys, shapes, dtypes): it runs whole under jax.jit.
    """
    xp, dtype = _check_params(params)
    _check_arrays(xp, grads, dtype, "grads")
    _check_state(xp, state, dtype)
    return _update(xp, params, grads, state)


def train_step(params, state, X, Y, *, noise=None, rng=None, dropout=True):
    """(params, state, loss): loss_and_grad, then update, as one pure function; the
    running statistics (batchnorm) in the new params are updated as PyTorch does.

    Compile it whole with JAX: step = jax.jit(module.train_step). The checks run while
    tracing; the values of X and Y are not checked under jit (check the data once,
    eagerly, or let fit do it). With dropout, pass noise (rng, a host generator,
    cannot go into jax.jit), or dropout=False to train without it: a call with
    neither is refused.
    """
    xp, X, Y = _prepare(params, X, Y)
    _check_state(xp, state, X.dtype)
    _training_batch(X.shape[0])
    noise = _noise(xp, X.dtype, X.shape[0], noise, rng, X, params, True, dropout)
    L, grads, statistics = _loss_and_grad(xp, params, X, Y, noise)
    params, state = _finite_update(xp, params, state, L, grads, statistics)
    return params, state, L


def _finite_update(xp, params, state, L, grads, statistics, refuse=True):
    """(params, state) after the update of a step with loss L, gradients grads and
    new running statistics; with CHECK_FINITE, none of them may be NaN or inf.

    With `refuse`, where the values are at hand (NumPy, PyTorch, CuPy,
    array-api-strict, eager JAX) such a step is refused, as the NumPy module's step
    refuses it: a ValueError "step refused: ..." names what is not finite, and
    nothing is returned (params and state, never written, are the caller's as
    before). Where they are not (under jax.jit, on Dask), or without `refuse` (fit's
    own step: reading a flag each step would wait for the device each step), the
    step is skipped instead, as PyTorch's GradScaler skips one: xp.where keeps every
    array of params and state, t included, as it was; a t that did not move tells
    it (fit checks that once an epoch).
    """
    if not CHECK_FINITE:
        new, state_new = _update(xp, params, grads, state)
        return ({**new, **statistics} if statistics else new), state_new
    ok = xp.all(xp.isfinite(L))
    for a in (*grads.values(), *statistics.values()):
        ok = ok & xp.all(xp.isfinite(a))
    known = _known(ok) if refuse else None
    if known is False:
        raise _refused(xp, L, grads, statistics)
    new, state_new = _update(xp, params, grads, state)
    if statistics:
        new = {**new, **statistics}
    if known:
        return new, state_new
    return _where(xp, ok, new, params), _where(xp, ok, state_new, state)


def _where(xp, ok, new, old):
    """new where the 0-d flag ok is true, else old: dicts of arrays, nested."""
    if isinstance(new, dict):
        return {k: _where(xp, ok, v, old[k]) for k, v in new.items()}
    return xp.where(ok, new, old)


def _refused(xp, L, grads, statistics):
    """The ValueError of a step refused for a loss, gradients or running statistics
    that came out NaN or inf (the NumPy module's step says the same)."""

    def bad(arrays):
        return [k for k, a in arrays.items() if not bool(xp.all(xp.isfinite(a)))]

    found = float(L)
    what = (
        f"the loss came out {found}"
        if found - found != 0
        else f"the loss was {found:.6g}"
    )
    parts = []
    if bad(grads):
        parts.append(f"the gradients of {', '.join(bad(grads))}")
    if bad(statistics):
        parts.append(f"the running statistics {', '.join(bad(statistics))}")
    if parts:
        what += f" and {' and '.join(parts)} came out NaN or inf"
    return ValueError(
        f"step refused: {what}; the update was skipped: no new params or state are "
        "returned, and the ones passed in are unchanged (this module never writes into "
        "its inputs). The numbers overflowed: scale X (standardize its columns) or "
        "lower the learning rate (set CHECK_FINITE = False to skip this check)"
    )


def _persist(arrays):
    """Dask: compute `arrays` (a tuple of dicts and arrays) into memory, as one graph,
    so that the next step's graph starts from numbers; without it each step's graph
    holds every earlier step. With a dask.distributed client the results stay on the
    workers. Other arrays: as given."""
    if not _is_dask(arrays[-1]):
        return arrays
    import dask  # loaded already: we hold a Dask array

    return dask.persist(*arrays)


def fit(
    params,
    X,
    Y,
    *,
    epochs,
    batch_size,
    seed=0,
    verbose=False,
    validation_data=None,
    state=None,
    step=None,
    rng=None,
    early_stopping=None,
    callback=None,
):
    """Mini-batch training, as the NumPy module's fit: it stores the trained arrays
    into `params` (and into `state` when one is given) and returns (params, state,
    history), params and state being those dicts.

    It writes into no array (JAX arrays are immutable): each step makes new ones, and
    the dicts get them at the end; hold `dict(params)` to keep the arrays of before.
    Each epoch shuffles the examples with NumPy's default_rng(seed + epoch) and walks
    them in batches of batch_size (the NumPy module's batches; with batchnorm a last
    batch of one example is left out). history["loss"] is the mean of the batch
    losses weighted by batch size; classifiers (TASK "classes" or "binary") also get
    history["accuracy"] on all of X after each epoch, and with validation_data=(X_val,
    Y_val) "val_loss" (and "val_accuracy").

    step(params, state, X, Y, **kw) -> (params, state, loss) defaults to train_step
    without its checks; with JAX pass step=jax.jit(module.train_step). Dropout's noise
    is drawn from rng (default: default_rng(seed), as the NumPy module's fit with a new
    state). The values of X and Y are checked once, here, also on Dask (one pass over
    the data). Dask: X and Y are shuffled once per epoch (persisted) and the batches
    are contiguous row ranges of that, so they keep their row chunks (on their
    workers); params and state are persisted after every step. Losses are read once
    per epoch (and, with verbose=True on a terminal, at each redraw of the progress
    line).

    A step whose loss, gradients or running statistics come out NaN or inf is
    skipped (params and state kept as they were, t too; see train_step), so that no
    step waits for the device to read a flag; at the end of the epoch fit sees that
    t moved less than the epoch's steps and stops with a ValueError, params and state
    holding the arrays after the epoch's last step. (The NumPy module's fit stops at
    the refused step itself.) Whatever else ends fit with an exception (train_step
    refusing a step, given as step=; a callback raising; Ctrl-C) leaves the arrays
    of the last step made in params and state, as the NumPy module's in-place fit
    does.

    callback and early_stopping as in the NumPy module's fit: callback(epoch,
    history) returning True stops; early_stopping=N (with validation_data) stops after
    N epochs without a lower val_loss, and at the end params, state (t, the
    optimizer's arrays) and rng hold what the best epoch left (history["best_epoch"],
    history["stopped_early"]).
    """
    import numpy as np

    epochs, batch_size, seed = _fit_counts(epochs, batch_size, seed)
    early_stopping, callback = _fit_options(early_stopping, callback, validation_data)
    xp, X, Y = _prepare(params, X, Y, force=True)
    given_state = state
    if state is None:
        state = init_state(params)
    _check_state(xp, state, X.dtype)
    if validation_data is not None:
        validation_data = _validation(
            lambda X_val, Y_val: _prepare(params, X_val, Y_val, force=True)[1:],
            validation_data,
        )
    if DROPOUT and rng is None:
        rng = np.random.default_rng(seed)
    if step is None:

        def step(params, state, X, Y, noise=None):
            L, grads, statistics = _loss_and_grad(xp, params, X, Y, noise)
            params, state = _finite_update(
                xp, params, state, L, grads, statistics, refuse=False
            )
            return params, state, L

    steps = sum(1 for _ in _batch_ranges(X.shape[0], batch_size))  # an epoch's
    made = {"steps": 0, "t": int(state["t"]), "last": None}

    def train(params, state, X_batch, Y_batch):
        made["last"] = (params, state)
        extra = {"noise": draw_noise(params, X_batch, rng)} if DROPOUT else {}
        params, state, L = _persist(step(params, state, X_batch, Y_batch, **extra))
        made["last"] = (params, state)
        made["steps"] += 1
        if CHECK_FINITE and made["steps"] % steps == 0:  # an epoch's last step
            moved = int(state["t"]) - made["t"]
            if moved != made["steps"]:
                skipped = made["steps"] - moved
                raise ValueError(
                    f"fit stopped: {skipped} step(s) up to epoch "
                    f"{made['steps'] // steps} were skipped (t moved {moved} times in "
                    f"{made['steps']} steps): their loss, gradients or running "
                    "statistics came out NaN or inf, and a step under jax.jit (or on "
                    "Dask) skips such a step instead of refusing it. params and state "
                    "hold the arrays after the epoch's last step. Scale X (standardize "
                    "its columns) or lower the learning rate"
                )
        return params, state, L

    def keep(params, state):  # the arrays are never written: holding them is enough
        return dict(params), state, rng.bit_generator.state if DROPOUT else None

    def restore(params, state, kept):
        if DROPOUT:
            rng.bit_generator.state = kept[2]
        return kept[0], kept[1]

    device = _device(X)

    def batches(order):
        if _is_dask(X):
            # shuffle once per epoch, then contiguous batches: each batch keeps the
            # row chunks (on their workers); a per-batch take would gather a batch
            # into one chunk (take follows the index's chunks) on one worker
            X_epoch, Y_epoch = _persist((X[order, ...], Y[order, ...]))
            return lambda start, size: (
                X_epoch[start : start + size, ...],
                Y_epoch[start : start + size, ...],
            )

        def batch(start, size):
            rows = xp.asarray(order[start : start + size], device=device)
            return xp.take(X, rows, axis=0), xp.take(Y, rows, axis=0)

        return batch

    try:
        trained, state, history = _train(
            xp,
            params,
            state,
            X,
            Y,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            validation=validation_data,
            verbose=verbose,
            batches=batches,
            step=train,
            early_stopping=early_stopping,
            callback=callback,
            keep=keep,
            restore=restore,
        )
    except BaseException:  # as the NumPy module's fit: the last step made is kept
        if made["last"] is not None:
            params.update(made["last"][0])
            if given_state is not None:
                given_state.update(made["last"][1])
        raise
    params.update(trained)  # in the caller's key order (jax.jit returns them sorted)
    if given_state is not None:
        given_state.update(state)
        state = given_state
    return params, state, history
