"""The runtime of a generated NumPy module: its checks and its in-place step machinery.

A module symgrad writes is its derived part (the network's constants and the functions
printed from its derivation) followed by the runtime: symgrad/runtime_shared.py (what
the NumPy module and its array-API twin do alike: the initial draws, predict, fit's
loop and history), then this file, each copied verbatim from the end of its
configuration block on. This file checks what it is given (NumPy arrays, values
scanned in every call), and offers the public API with the shared part:
init_params, forward, loss, loss_and_grad, predict, save_params, load_params,
init_state, step and fit, which trains params and state in place. The numbers come from the
functions of the derived part, called on checked arrays (X of shape (m, LAYER_SIZES[0])
and Y of shape (m, LAYER_SIZES[-1]), both of the params' dtype):

    _forward(params, X, training, rng) -> Ŷ
    _loss(params, X, Y, training, rng) -> the loss, a float
    _loss_and_grad(params, X, Y, rng) -> (loss, grads), grads keyed by PARAM_NAMES
    _make_work(m, dtype) -> the work arrays of _step for a batch of m, a dict of arrays
    _step(params, state, X, Y, work) -> the loss; updates params and state in place,
        and state["t"] by one; with CHECK_FINITE, a loss, gradient or running
        statistic that comes out NaN or inf skips the update (params, the
        optimizer's arrays and t unwritten)

The runtime branches on the module's constants only; a choice that would cost time in
every call is made once, at import. It imports NumPy only: a generated module works
without symgrad installed. The configuration block below holds placeholder values, so
that this file imports, lints and tests on its own; render.py copies what follows the
block, and tests/test_runtime.py configures copies with constants and small derived
functions of its own.
"""

import numpy as np

# the shared runtime: a generated module has its code instead, before this file's,
# configured by the module's constants; this file alone runs it on its placeholders
from symgrad.runtime_shared import (
    _KEYS,
    _SHAPES,
    _fit_counts,
    _fit_options,
    _initial_values,
    _train,
    _training_batch,
    _validation,
    _y_shape_error,
)

# --- configuration: each generated module has its own constants and derived part ---
NAME = "runtime"
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
OPTIMIZER_STATES = {"sgd": ()}  # each registered optimizer's state arrays
DROPOUT = False  # training draws masks from state["rng"]
MIN_BATCH = 1  # examples a training batch needs (2 with batchnorm: a variance)
CHECK_FINITE = True


def _forward(params, X, training, rng):
    raise NotImplementedError("defined by the derived part of a generated module")


def _loss(params, X, Y, training, rng):
    raise NotImplementedError("defined by the derived part of a generated module")


def _loss_and_grad(params, X, Y, rng):
    raise NotImplementedError("defined by the derived part of a generated module")


def _make_work(m, dtype):
    raise NotImplementedError("defined by the derived part of a generated module")


def _step(params, state, X, Y, work):
    raise NotImplementedError("defined by the derived part of a generated module")


def learning_rate(t):
    """The learning rate of optimizer step t (printed from the spec's schedule)."""
    return OPTIMIZER["learning_rate"]


# --- end of configuration ---


# NumPy's runtime: the same in every module symgrad writes (symgrad/runtime.py), after
# the shared one; configured by the constants above, the derived part computes the
# numbers.


def init_params(seed=0, dtype=np.float64):
    """Fresh parameters, a dict of arrays with the keys PARAM_NAMES + BUFFER_NAMES.

    INIT says how each array is made: "he_normal" (normal, standard deviation
    √(2 / fan_in)), "glorot_uniform" (uniform in ±√(6 / (fan_in + fan_out))), "zeros"
    or "ones". The draws come from NumPy's default_rng(seed), in the order of the keys,
    so a seed gives the same parameters on every machine.
    """
    return {k: v.astype(dtype) for k, v in _initial_values(seed).items()}


# --- checks ---------------------------------------------------------------------------


def _check_params(params):
    """The params' dtype, after checking their keys, shapes and dtype."""
    try:
        signature = [(v.shape, v.dtype) for v in params.values()]
        if signature in _SIGNATURES and list(params) == _NAMES:
            return signature[0][1]
    except (AttributeError, TypeError):
        pass
    # not the usual case: find what is wrong, and say so
    keys = list(_KEYS)
    if not isinstance(params, dict):
        raise TypeError(
            f"params must be a dict with keys {keys}, found {type(params).__name__}"
        )
    if set(params) != set(_KEYS):
        raise ValueError(
            f"params must be a dict with keys {keys}, found {sorted(params, key=str)}"
        )
    for key, shape in _SHAPES.items():
        if not isinstance(params[key], np.ndarray):
            raise TypeError(
                f"params[{key!r}] must be a NumPy array, found {type(params[key]).__name__}"
            )
        if params[key].shape != shape:
            raise ValueError(
                f"params[{key!r}] must have shape {shape}, found {params[key].shape}"
            )
    dtypes = {v.dtype for v in params.values()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        found = ", ".join(sorted(str(d) for d in dtypes))
        raise ValueError(f"params must be all float32 or all float64, found {found}")
    return dtypes.pop()  # keys in another order


_NAMES = list(_KEYS)
_SIGNATURES = [  # (shape, dtype) of each param, in order: the usual, valid params
    [(_SHAPES[k], np.dtype(dtype)) for k in _KEYS] for dtype in (np.float32, np.float64)
]


def _finite(a):
    # Σ a² (one BLAS pass, no temporary) is finite unless an entry is NaN or ±inf, or
    # the sum overflows; only then is every entry looked at
    return np.isfinite(np.vdot(a, a)) or np.isfinite(a).all()


def _real(a, name, dtype):
    """a as an array of dtype, if it holds real numbers (a TypeError if not)."""
    a = np.asarray(a)
    if a.dtype != dtype:
        if a.dtype.kind not in "biuf":  # complex parts would be dropped, strings parsed
            raise TypeError(
                f"{name} must hold real numbers (bool, int or float), found dtype {a.dtype}: "
                f"convert it first, e.g. np.asarray({name}, dtype=float)"
            )
        a = a.astype(dtype)
    return a


def _inputs(params, X):
    """X as a (m, LAYER_SIZES[0]) array of the params' dtype."""
    return _features(X, _check_params(params))


def _features(X, dtype):
    X = _real(X, "X", dtype)
    if INPUT_SHAPE is not None and X.ndim == 4 and X.shape[1:] == INPUT_SHAPE:
        X = X.reshape(X.shape[0], LAYER_SIZES[0])  # images as rows, row-major
    if X.ndim != 2 or X.shape[1] != LAYER_SIZES[0]:
        if INPUT_SHAPE is not None:
            c, h, w = INPUT_SHAPE
            raise ValueError(
                f"X must have shape (m, {c}, {h}, {w}) or (m, {LAYER_SIZES[0]}),"
                f" found {X.shape}"
            )
        raise ValueError(f"X must have shape (m, {LAYER_SIZES[0]}), found {X.shape}")
    if CHECK_FINITE and not _finite(X):
        raise ValueError(
            "X contains NaN or inf (set CHECK_FINITE = False to skip this check)"
        )
    return X


def _targets(Y, m, dtype):
    """Y as a (m, LAYER_SIZES[-1]) array of dtype, for m ≥ 1 examples.

    Y holds what TARGETS says: rows on the simplex (entries ≥ 0 summing to 1), values
    in [0, 1] (0/1 labels or probabilities), or any real numbers; with LABELS it may
    be integer class labels of shape (m,), and with one output unit shape (m,).
    CHECK_FINITE checks the values: NaN/inf, and the range of TARGETS.
    """
    if m == 0:
        raise ValueError(
            f"X has no examples (shape (0, {LAYER_SIZES[0]})): "
            "the loss is a mean over at least one example"
        )
    Y = np.asarray(Y)
    if Y.dtype.kind not in "biuf":
        raise TypeError(
            f"Y must hold real numbers (bool, int or float), found dtype {Y.dtype}"
        )
    if Y.ndim == 1:
        if LABELS:
            return _one_hot(Y, m, dtype)
        if LAYER_SIZES[-1] == 1:
            Y = Y[:, None]
    if Y.shape != (m, LAYER_SIZES[-1]):
        raise _y_shape_error(Y.shape, m)
    given = Y.dtype
    Y = Y.astype(dtype, copy=False)
    if CHECK_FINITE and not _in_range(Y, given):
        _refuse_targets(Y, given)
    return Y


_min, _max = np.minimum.reduce, np.maximum.reduce


def _in_unit_interval(Y, given):
    # in [0, 1] implies finite: one check for both (the ufuncs' reduce: Y.min() is slower)
    return _min(Y, axis=None) >= 0 and _max(Y, axis=None) <= 1


def _on_simplex(Y, given):
    # row sums 1 within the tolerance; with entries ≥ 0 this implies finite: one check
    # for both
    tol = _simplex_tolerance(Y.dtype, given)
    return (
        _min(Y, axis=None) >= 0
        and _max(np.abs(np.add.reduce(Y, axis=1) - 1), axis=None) <= tol
    )


def _simplex_tolerance(dtype, given):
    """√ε of the coarser of Y's dtype as given and the params' dtype."""
    return np.sqrt(
        max(np.finfo(dtype).eps, np.finfo(given).eps if given.kind == "f" else 0)
    )


def _all_finite(Y, given):
    return _finite(Y)


_in_range = {  # the check of the targets' values, by what they hold
    "simplex": _on_simplex,
    "unit_interval": _in_unit_interval,
    "real": _all_finite,
}[TARGETS]


def _refuse_targets(Y, given):
    # the targets failed the check of _targets: say which entry, and why it matters
    if not np.isfinite(Y).all():
        raise ValueError(
            "Y contains NaN or inf (set CHECK_FINITE = False to skip this check)"
        )
    if TARGETS == "unit_interval":
        i, j = np.argwhere((Y < 0) | (Y > 1))[0]
        raise ValueError(
            f"the loss {LOSS} takes targets in [0, 1] (0/1 labels or probabilities), "
            f"found Y[{i}, {j}] = {Y[i, j]}"
        )
    tol = _simplex_tolerance(Y.dtype, given)
    i = int(np.argmax((Y < 0).any(axis=1) | (np.abs(Y.sum(axis=1) - 1) > tol)))
    raise ValueError(
        f"the loss {LOSS} takes target rows on the simplex (entries ≥ 0 summing to 1): "
        f"its derived gradient Ŷ - Y assumes it; found Y[{i}] = {Y[i]} (sum {Y[i].sum():.8g}); "
        f"class labels can be passed as integers of shape (m,)"
    )


def _one_hot(labels, m, dtype):
    """Class labels (m,) in [0, n_out) as one-hot rows; whole-number floats are labels too."""
    n = LAYER_SIZES[-1]
    if labels.shape != (m,):
        raise ValueError(
            f"labels must be {m} integers in [0, {n}), found shape {labels.shape}"
        )
    bad = (labels < 0) | (labels >= n)
    if labels.dtype.kind == "f":
        bad |= np.floor(labels) != labels  # NaN too
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"labels must be {m} integers in [0, {n}), found {labels[i]} at Y[{i}]"
        )
    return np.eye(n, dtype=dtype)[labels.astype(np.intp)]


def _generator(rng):
    """rng, if it is None or a NumPy Generator (the masks of dropout are drawn from it)."""
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a NumPy Generator (np.random.default_rng(seed)) or None, "
            f"found {type(rng).__name__}"
        )
    return rng


# --- the functions of the network -----------------------------------------------------


def forward(params, X, *, training=False, rng=None):
    """The network's output Ŷ, shape (m, LAYER_SIZES[-1]).

    training=True computes it as training does: batch statistics instead of running
    ones (batchnorm), and dropout with masks drawn from rng when one is given. A
    network with neither computes the same either way.
    """
    X = _inputs(params, X)
    if training:
        _training_batch(X.shape[0])
    return _forward(params, X, training, _generator(rng))


def loss(params, X, Y, *, training=False, rng=None):
    """The mean loss over the batch (plus the l2 term, if any), as a float.

    loss(params, X, Y, training=True, rng=rng) is the function whose gradient
    loss_and_grad(params, X, Y, rng=rng) returns.
    """
    X = _inputs(params, X)
    Y = _targets(Y, X.shape[0], X.dtype)
    if training:
        _training_batch(X.shape[0])
    return _loss(params, X, Y, training, _generator(rng))


def loss_and_grad(params, X, Y, *, rng=None):
    """(loss, grads): grads has the keys PARAM_NAMES, with the shapes and dtype of params.

    The loss is the one of training (batch statistics; dropout only with an rng).
    """
    X = _inputs(params, X)
    Y = _targets(Y, X.shape[0], X.dtype)
    _training_batch(X.shape[0])
    return _loss_and_grad(params, X, Y, _generator(rng))


# what the shared runtime asks of NumPy's (see symgrad/runtime_shared.py)


def _namespace(arrays, what):
    return np  # the checks have made them NumPy arrays


def _output(xp, params, X):
    return _forward(params, X, False, None)


def _inference_loss(xp, params, X, Y):
    return _loss(params, X, Y, False, None)


def _as_index(xp, flags):
    return flags.astype(np.int64)


# --- saved parameters -----------------------------------------------------------------


def save_params(path, params):
    """Write params to an .npz file (np.savez adds the suffix if path has none)."""
    _check_params(params)
    np.savez(path, **{k: params[k] for k in _KEYS})


def load_params(path):
    """Params written by save_params, checked against this network's shapes.

    Reads are bounded: each member's .npy header is read first, and its shape and
    dtype compared with the module's before any data is read; then exactly the bytes
    it declares are read. A file that is not such an archive, or one whose members
    are not this network's arrays (missing, extra, of another shape, pickled objects),
    is a ValueError that names it and what was found; nothing is loaded.
    """
    import zipfile

    try:
        with open(path, "rb") as file:
            head = file.read(6)
            if not head.startswith(b"PK"):  # a zip archive, as np.savez writes
                if not head:
                    found = "an empty file"
                elif head == b"\x93NUMPY":
                    found = "a .npy file (one array)"
                else:
                    found = f"a file starting {head!r}"
                raise _Refused(
                    f"expected an .npz archive written by save_params, found {found}"
                )
            file.seek(0)
            try:
                with zipfile.ZipFile(file) as archive:
                    params = _read_members(archive)
            except _Refused:
                raise
            # zipfile's BadZipFile, EOFError, a bad header, ...: whatever it raises
            except Exception as exc:  # noqa: BLE001
                raise _Refused(
                    f"not a readable .npz archive ({type(exc).__name__}: {exc})"
                ) from None
    except _Refused as exc:
        raise ValueError(f"{path}: {exc}") from None
    try:
        _check_params(params)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{path}: {exc}") from None
    return {k: params[k] for k in _KEYS}


class _Refused(Exception):
    """load_params: why a file is not this network's params (raised as a ValueError)."""


def _read_members(archive):
    """{key: array} of a zip archive whose members are exactly the module's arrays as
    .npy files: the names are compared first, then each header, then its data read
    (no more bytes than the header declares)."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    expected = [f"{k}.npy" for k in _KEYS]
    if len(names) > 2 * len(_KEYS) or sorted(names) != sorted(expected):
        missing = sorted(set(expected) - set(names))
        extra = sorted(set(names) - set(expected))
        shown = extra[:5] + ([f"... {len(extra) - 5} more"] if len(extra) > 5 else [])
        raise _Refused(
            f"params must be a dict with keys {list(_KEYS)}, saved as the members "
            f"{expected}; found {len(names)} members"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {shown}" if shown else "")
        )
    params = {}
    for info in infos:
        key = info.filename[: -len(".npy")]
        with archive.open(info) as member:
            params[key] = _read_npy(member, key)
    return params


def _read_npy(member, key):
    """The array of one .npy member, after its header says it is params[key]: the
    shape of _SHAPES[key], float32 or float64, not Fortran-ordered, no objects."""
    fmt = np.lib.format
    version = fmt.read_magic(member)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(member, max_header_size=4096)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(member, max_header_size=4096)
    else:
        raise _Refused(f"{key}.npy: unsupported .npy format version {version}")
    where = f"{key}.npy declares"
    if dtype.hasobject or dtype not in (np.float32, np.float64):
        raise _Refused(
            f"{where} dtype {dtype}: params are float32 or float64 (pickled objects are never read)"
        )
    if tuple(shape) != _SHAPES[key]:
        raise _Refused(
            f"{where} shape {tuple(shape)}: params[{key!r}] must have shape {_SHAPES[key]}"
        )
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = member.read(
        size + 1
    )  # what it declares, and one byte to see if there is more
    if len(data) != size:
        found = "more" if len(data) > size else f"{len(data)} bytes of"
        raise _Refused(
            f"{key}.npy holds {found} data than the {size} bytes its header declares"
        )
    array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
    return np.array(array, order="C")  # a writeable copy


# --- training -------------------------------------------------------------------------


def init_state(params, seed=0):
    """Optimizer state for `step`: the step count ("t") and the optimizer's arrays per
    parameter (MOMENTS: none for sgd, "velocity" for momentum, "m" and "v" for adam).

    It also keeps the gradient arrays ("grads") and the work arrays of a step
    ("buffers", made by the first step with a batch size; the three most recently
    used sizes are kept). With dropout, "rng" is the generator of the masks,
    default_rng(seed).
    """
    _check_params(params)
    state = {"t": 0}
    for key in MOMENTS:
        state[key] = {k: np.zeros_like(params[k]) for k in PARAM_NAMES}
    # C order: np.dot(..., out=) writes only into C-contiguous arrays
    state["grads"] = {
        k: np.zeros(params[k].shape, params[k].dtype) for k in PARAM_NAMES
    }
    state["buffers"] = {}
    if DROPOUT:
        state["rng"] = np.random.default_rng(seed)
    return state


_EXTRA_KEYS = {"rng"} if DROPOUT else set()
_STATE_KEYS = {"t", *MOMENTS, "grads", "buffers", *_EXTRA_KEYS}
_STEP_SIGNATURES = [  # (key, shape, dtype, writeable) of params, state[MOMENTS] and
    # state["grads"] (for these: writeable and C-contiguous), in order
    [(k, _SHAPES[k], np.dtype(dtype), True) for k in _KEYS]
    + [(k, PARAM_SHAPES[k], np.dtype(dtype), True) for k in PARAM_NAMES] * len(MOMENTS)
    + [(k, PARAM_SHAPES[k], np.dtype(dtype), True) for k in PARAM_NAMES]
    for dtype in (np.float32, np.float64)
]
_Generator = np.random.Generator
_BATCH_SIZES_KEPT = 3  # fit's full and partial batch, and one more


def _check_step(params, state):
    """The params' dtype, after checking that step can update params and state.

    The usual case is one comparison of every array's (key, shape, dtype, flags) and
    a few type checks; anything else goes through _state_error. Everything a step
    writes into is covered, so that no check of step fails after its first write.
    """
    try:
        # flat comprehensions: as fast as one over a literal tuple of the dicts
        found = [(k, v.shape, v.dtype, v.flags.writeable) for k, v in params.items()]
        if MOMENTS:
            found += [
                (k, v.shape, v.dtype, v.flags.writeable)
                for key in MOMENTS
                for k, v in state[key].items()
            ]
        # carray: writeable, aligned and C-contiguous, as np.dot(out=) needs
        found += [
            (k, v.shape, v.dtype, v.flags.carray) for k, v in state["grads"].items()
        ]
        t = state["t"]
        if (
            found in _STEP_SIGNATURES
            and state.keys() == _STATE_KEYS
            and type(t) is int
            and t >= 0
            and type(state["buffers"]) is dict
            and (not DROPOUT or type(state["rng"]) is _Generator)
        ):
            return found[0][2]
    except (AttributeError, KeyError, TypeError):
        pass
    dtype = _check_params(params)
    error = _state_error(params, state, dtype)
    if error is not None:
        raise error
    return dtype


def _state_error(params, state, dtype):
    """Why step cannot update params and state in place, as an exception; else None.

    step writes into every array of params, into state["t"] and into the arrays of
    state (gradients with np.dot(out=), which needs C order). All are checked before
    the first write, so that a step that fails changes nothing.
    """
    for k in _KEYS:
        if not params[k].flags.writeable:
            return ValueError(
                f"params[{k!r}] is read-only: step updates it in place (pass a writeable copy)"
            )
    if not isinstance(state, dict):
        return TypeError(
            f"state must be a dict made by init_state(params), found {type(state).__name__}"
        )
    if state.keys() != _STATE_KEYS:
        found = sorted(state, key=str)
        others = [
            name
            for name, moments in OPTIMIZER_STATES.items()
            if state.keys() == {"t", *moments, "grads", "buffers", *_EXTRA_KEYS}
        ]
        origin = f" (the keys of the {others[0]} optimizer's state)" if others else ""
        return ValueError(
            f"state must be made for this module's optimizer, {OPTIMIZER['name']}, with keys "
            f"{sorted(_STATE_KEYS)}; found keys {found}{origin}: make it with init_state(params)"
        )
    t = state["t"]
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
        return TypeError(
            f"state['t'] must be an int (the step count), found {type(t).__name__}"
        )
    if t < 0:
        return ValueError(f"state['t'] must be ≥ 0 (the step count), found {t}")
    if not isinstance(state["buffers"], dict):
        return TypeError(
            f"state['buffers'] must be a dict, found {type(state['buffers']).__name__}"
        )
    if DROPOUT and not isinstance(state["rng"], np.random.Generator):
        found = type(state["rng"]).__name__
        return TypeError(
            f"state['rng'] must be a NumPy Generator (the dropout masks'), found {found}"
        )
    for key in sorted(_STATE_KEYS - {"t", "buffers", "rng"}):  # the dicts of arrays
        arrays = state[key]
        if not isinstance(arrays, dict):
            return TypeError(
                f"state[{key!r}] must be a dict of arrays, found {type(arrays).__name__}"
            )
        if arrays.keys() != set(PARAM_NAMES):
            found = sorted(arrays, key=str)
            return ValueError(
                f"state[{key!r}] must have the keys {list(PARAM_NAMES)}, found {found}"
            )
        for k, shape in PARAM_SHAPES.items():
            a, where = arrays[k], f"state[{key!r}][{k!r}]"
            if not isinstance(a, np.ndarray):
                return TypeError(
                    f"{where} must be a NumPy array, found {type(a).__name__}"
                )
            if a.shape != shape:
                return ValueError(f"{where} must have shape {shape}, found {a.shape}")
            if a.dtype != dtype:
                return ValueError(
                    f"state was made for {a.dtype} params, found {dtype} params ({where})"
                )
            if not a.flags.writeable:
                return ValueError(f"{where} is read-only: step updates it in place")
            if key == "grads" and not a.flags.c_contiguous:
                return ValueError(
                    f"{where} must be C-contiguous: np.dot(out=) writes only into C-ordered arrays"
                )
    return None


def _work(state, m, dtype):
    """The work arrays of `step` for a batch of m examples: made once, then reused."""
    # taken out and put back last: the dict runs from the least to the most recently used
    buffers = state["buffers"]
    work = buffers.pop(m, None)
    if work is None or next(iter(work.values())).dtype != dtype:
        while len(buffers) >= _BATCH_SIZES_KEPT:
            del buffers[next(iter(buffers))]  # the least recently used size
        work = _make_work(m, dtype)
    buffers[m] = work
    return work


def step(params, state, X, Y):
    """One update of params by the module's optimizer, in place; returns the loss before it.

    The numbers of loss_and_grad followed by the update, computed with in-place NumPy
    calls in the arrays of `state` (see init_state): a step allocates nothing new
    after the first with its batch size. params and state are checked before anything
    is written: a step refused for them changes nothing.

    A step whose loss, gradients or running statistics come out NaN or inf (X too
    large, a learning rate too high) is refused, as PyTorch's GradScaler skips one:
    the update is skipped, and a ValueError "step refused: ..." names what is not
    finite. params (running statistics too), t, the optimizer's arrays and the
    dropout generator are then as they were before the step, bit for bit;
    state["grads"] holds the refused step's gradients, to look at (the work arrays in
    state["buffers"], its intermediate values). The check costs one np.vdot per
    gradient and running statistic, and copies of the running statistics and the
    generator's state; CHECK_FINITE = False skips it (and the checks of X and Y), and
    the update then writes what comes out. An exception from inside the update
    itself (a KeyboardInterrupt) may leave it half done.
    """
    dtype = _check_step(params, state)
    X = _features(X, dtype)
    Y = _targets(Y, X.shape[0], dtype)
    _training_batch(X.shape[0])
    return _step_or_nothing(params, state, X, Y, _work(state, X.shape[0], dtype))


_BUFFERS_SIZE = sum(int(np.prod(BUFFER_SHAPES[k])) for k in BUFFER_NAMES)


def _step_or_nothing(params, state, X, Y, work):
    """_step on checked params, state and batch, refused as step says.

    With CHECK_FINITE, _step looks at the loss, the gradients and the running
    statistics between the backward pass and the update, and when one is NaN or inf
    returns before the update, which writes params and the optimizer's state:
    state["t"] unmoved tells it here. What
    the forward pass wrote before, the running statistics (BUFFER_NAMES, kept in a
    flat array with the work arrays) and the dropout generator's state, is kept first
    and put back. The cost of a step that goes through: those copies, and one np.vdot
    per gradient and statistic in _step; no array is allocated after the first step.
    """
    if not CHECK_FINITE:
        return _step(params, state, X, Y, work)
    t = state["t"]
    kept = None
    if BUFFER_NAMES:
        kept = work.get("_kept")
        if kept is None:  # the batch size's first step
            kept = work["_kept"] = np.empty(_BUFFERS_SIZE, X.dtype)
        np.concatenate([params[k] for k in BUFFER_NAMES], axis=None, out=kept)
    drawn = state["rng"].bit_generator.state if DROPOUT else None
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            L = _step(params, state, X, Y, work)
    except BaseException:
        _put_back(params, state, kept, t, drawn)
        error = _state_error(params, state, X.dtype)
        if error is None:
            raise
        raise error from None
    if state["t"] != t:  # the update was made
        return L
    error = _refused(L, params, state)  # names the statistics before they go back
    _put_back(params, state, kept, t, drawn)
    raise error


def _finite_update(L, params, grads):
    """Whether the loss L, every gradient and the running statistics are finite, entry
    by entry: _step asks when its Σ a² came out NaN or inf, which a sum of squares
    also does when it overflows (past √max of the dtype)."""
    return (
        L - L == 0
        and all(_finite(g) for g in grads.values())
        and all(_finite(params[k]) for k in BUFFER_NAMES)
    )


def _put_back(params, state, kept, t, drawn):
    """The running statistics, t and the dropout generator as they were before."""
    start = 0
    for k in BUFFER_NAMES:
        a = params[k]
        a[...] = kept[start : start + a.size].reshape(a.shape)
        start += a.size
    state["t"] = t
    if DROPOUT:
        state["rng"].bit_generator.state = drawn


def _refused(L, params, state):
    """The ValueError of a step refused for a loss or gradients that are NaN or inf."""
    grads = [k for k in PARAM_NAMES if not np.isfinite(state["grads"][k]).all()]
    statistics = [k for k in BUFFER_NAMES if not np.isfinite(params[k]).all()]
    bad = [f"the gradients of {', '.join(grads)}"] if grads else []
    if statistics:
        bad.append(f"the running statistics {', '.join(statistics)}")
    found = f"the loss came out {L}" if L - L != 0 else f"the loss was {L:.6g}"
    if bad:
        found += f" and {' and '.join(bad)} came out NaN or inf"
    return ValueError(
        f"step refused: {found}; the update was skipped, params and state are as they "
        "were before it (t, the optimizer's arrays, running statistics, the dropout "
        "generator), but for state['grads'], which holds the refused step's gradients. "
        "The numbers overflowed: scale X (standardize its columns) or lower the "
        "learning rate (set CHECK_FINITE = False to skip this check)"
    )


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
    early_stopping=None,
    callback=None,
):
    """Mini-batch training with `step`, in place; returns the per-epoch history.

    Each epoch shuffles the examples with default_rng(seed + epoch) and walks them in
    batches of batch_size (the last one may be smaller; with batchnorm, a last batch
    of one example is left out, as it has no variance). history["loss"] is the mean
    of the batch losses, weighted by batch size; for classifiers (TASK "classes" or
    "binary") history["accuracy"] is measured on all of X after the epoch. With
    validation_data=(X_val, Y_val), "val_loss" (and "val_accuracy") are recorded too.
    verbose=True shows the progress: on a terminal one line per epoch, redrawn as
    the batches go (epoch, batches, loss, time, ETA), elsewhere one line per epoch
    when it ends. Pass the `state` of an earlier call to go on training with its
    optimizer state (and its dropout generator: a new state's is seeded with seed).
    A step refused for a loss or gradients that come out NaN or inf (see step) stops
    fit with step's ValueError: params, and the state's t, optimizer arrays and
    generator, are then those of the last step made.

    callback(epoch, history) runs after each epoch (epoch from 0; history holds its
    numbers); returning True stops training. early_stopping=N (with validation_data)
    stops after N epochs in a row without a lower val_loss than the best so far, and
    at the end, however training ended, puts back into params and state what the
    best epoch left: every array of params (the running statistics too), and the
    state's t, optimizer arrays and dropout generator, in place, as if fit had
    trained best_epoch + 1 epochs (state["grads"] and the work arrays are not
    restored: the next step overwrites them). history["best_epoch"] is the best
    epoch's index in history's lists; history["stopped_early"] says whether early
    stopping ended training before `epochs`.
    """
    epochs, batch_size, seed = _fit_counts(epochs, batch_size, seed)
    early_stopping, callback = _fit_options(early_stopping, callback, validation_data)
    X = _inputs(params, X)
    n = X.shape[0]
    if np.shape(Y)[:1] != (n,):
        raise ValueError(f"X has {n} examples but Y has shape {np.shape(Y)}")
    Y = _targets(Y, n, X.dtype)
    if state is None:
        state = init_state(params, seed)
    error = _state_error(params, state, _check_step(params, state))  # the gradients too
    if error is not None:
        raise error
    if validation_data is not None:

        def check(X_val, Y_val):
            X_val = _inputs(params, X_val)
            return X_val, _targets(Y_val, X_val.shape[0], X.dtype)

        validation_data = _validation(check, validation_data)
    gathered = {}  # batch size -> the arrays a batch is gathered into

    def batches(order):
        def batch(start, size):
            if size not in gathered:
                gathered[size] = (
                    np.empty((size, LAYER_SIZES[0]), X.dtype),
                    np.empty((size, LAYER_SIZES[-1]), X.dtype),
                )
            X_batch, Y_batch = gathered[size]
            np.take(X, order[start : start + size], axis=0, out=X_batch)
            np.take(Y, order[start : start + size], axis=0, out=Y_batch)
            return X_batch, Y_batch

        return batch

    def train(params, state, X_batch, Y_batch):
        work = _work(state, X_batch.shape[0], X.dtype)
        return params, state, _step_or_nothing(params, state, X_batch, Y_batch, work)

    _, _, history = _train(
        np,
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
        keep=_keep,
        restore=_restore,
    )
    return history


def _keep(params, state):
    """Copies of what an epoch leaves in params and state (see fit)."""
    arrays = {k: params[k] for k in _KEYS}
    for key in MOMENTS:
        arrays.update({(key, k): state[key][k] for k in PARAM_NAMES})
    copies = {k: a.copy() for k, a in arrays.items()}
    drawn = state["rng"].bit_generator.state if DROPOUT else None
    return {"arrays": copies, "t": state["t"], "drawn": drawn}


def _restore(params, state, kept):
    """params and state as _keep found them, written into their arrays."""
    for k, a in kept["arrays"].items():
        np.copyto(state[k[0]][k[1]] if isinstance(k, tuple) else params[k], a)
    state["t"] = kept["t"]
    if DROPOUT:
        state["rng"].bit_generator.state = kept["drawn"]
    return params, state
