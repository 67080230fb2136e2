"""The runtime both generated modules share: one source, copied into each.

A NumPy module (`<name>.py`) and its array-API twin (`<name>_xp.py`) end with the same
runtime code wherever they do the same thing: the initial draws, predict's decision by
task and predict_proba, the counts and options fit takes, its batches, its epoch loop
and its history, early stopping and callbacks, and the progress line. That code is
this file, from the end of the configuration block on, copied verbatim into both
modules before the target's own runtime (symgrad/runtime.py: NumPy's checks and its
in-place step machinery; symgrad/runtime_xp.py: the namespace, Dask and jit). A test
(tests/test_runtime_shared.py) checks that every function below is the same text in
a generated module and its twin.

It is written in the vocabulary that NumPy (≥ 1.26) and the array API standard share,
with the namespace `xp` passed in (the NumPy module passes numpy itself), and it reads
the module's constants and these functions of the target's runtime:

    forward(params, X) -> Ŷ, the public function (X and params checked)
    _namespace(arrays, what) -> the array namespace of arrays
    _output(xp, params, X) -> Ŷ for inference, on checked X
    _inference_loss(xp, params, X, Y) -> the loss for inference on checked X, Y, a float
    _as_index(xp, flags) -> boolean flags as 0/1 in the namespace's index dtype
    learning_rate(t) -> the learning rate of optimizer step t (the derived part)

NumPy, for the host generator (a seed gives the same draws in both modules), is
imported inside the functions that draw: the array-API module imports no array library
at its top. The configuration block below holds placeholder values, so that this file
imports and lints on its own; tests/test_runtime.py and tests/test_runtime_xp.py run
it, configured, together with each target's runtime.
"""

# --- configuration: each generated module has its own constants and derived part ---
NAME = "runtime_shared"
LAYER_SIZES = (2, 1)  # input width first
PARAM_NAMES = ("W1", "b1")  # the trainable arrays: grads and optimizer moments
PARAM_SHAPES = {"W1": (2, 1), "b1": (1,)}
BUFFER_NAMES = ()  # state arrays kept in params (batchnorm's running statistics)
BUFFER_SHAPES = {}
INIT = {"W1": ("glorot_uniform", 2, 1), "b1": ("zeros",)}  # also for the buffers
TASK = "values"  # what predict returns: "classes" | "binary" | "values"
LABELS = False  # integer class labels (m,) are accepted for Y
MIN_BATCH = 1  # examples a training batch needs (2 with batchnorm: a variance)


def forward(params, X):
    raise NotImplementedError("defined by the target's runtime")


def learning_rate(t):
    raise NotImplementedError("defined by the derived part of a generated module")


def _namespace(arrays, what):
    raise NotImplementedError("defined by the target's runtime")


def _output(xp, params, X):
    raise NotImplementedError("defined by the target's runtime")


def _inference_loss(xp, params, X, Y):
    raise NotImplementedError("defined by the target's runtime")


def _as_index(xp, flags):
    raise NotImplementedError("defined by the target's runtime")


# --- end of configuration ---


# The runtime: first what both modules share (symgrad/runtime_shared.py), configured
# by the constants above; the target's own runtime follows it.

_KEYS = PARAM_NAMES + BUFFER_NAMES  # the keys of params, in order
_SHAPES = {**PARAM_SHAPES, **BUFFER_SHAPES}


def _initial_values(seed):
    """The initial parameters as float64 NumPy arrays, {key: array} in the order of
    PARAM_NAMES + BUFFER_NAMES.

    INIT says how each array is made: "he_normal" (normal, standard deviation
    √(2 / fan_in)), "glorot_uniform" (uniform in ±√(6 / (fan_in + fan_out))), "zeros"
    or "ones". The draws come from NumPy's default_rng(seed), in the order of the keys,
    so a seed gives the same parameters on every machine and in both modules.
    """
    import numpy as np  # the host generator, also in the array-API module

    rng = np.random.default_rng(seed)
    values = {}
    for key in _KEYS:
        kind, *fans = INIT[key]
        shape = _SHAPES[key]
        if kind == "he_normal":
            values[key] = rng.standard_normal(shape) * np.sqrt(2 / fans[0])
        elif kind == "glorot_uniform":
            limit = np.sqrt(6 / (fans[0] + fans[1]))
            values[key] = rng.uniform(-limit, limit, shape)
        elif kind in ("zeros", "ones"):
            values[key] = np.zeros(shape) if kind == "zeros" else np.ones(shape)
        else:
            raise ValueError(f"INIT[{key!r}]: unknown initialization {kind!r}")
    return values


# --- predictions ------------------------------------------------------------------------


def predict(params, X):
    """The predictions, by TASK: the class index per example, shape (m,), for
    "classes"; 0/1 per output (Ŷ ≥ 0.5), shape (m, n_out), for "binary"; Ŷ itself for
    "values"."""
    Yhat = forward(params, X)
    return _decide(_namespace([Yhat], "Ŷ"), Yhat)


def predict_proba(params, X):
    """The class probabilities of a classifier: Ŷ itself, the network's output.

    TASK "classes": the softmax rows, shape (m, n_classes), each summing to 1.
    TASK "binary": the sigmoid (or other (0, 1)) outputs, shape (m, n_out): the
    probability of class 1 for each output, as torch.sigmoid(logits) and Keras give
    it, so that predict(params, X) is (predict_proba(params, X) >= 0.5) entry by
    entry (scikit-learn's (m, 2) layout of one output is hstack([1 - p, p])). A
    network that predicts values has no probabilities: a ValueError says so.
    """
    if TASK not in ("classes", "binary"):
        raise ValueError(
            f"predict_proba is for classifiers; this network predicts values (TASK "
            f"{TASK!r}: its loss is not a classification loss): use forward(params, X) "
            "or predict(params, X), or set `task: binary` or `task: classes` in the "
            "spec if the output is a probability"
        )
    return forward(params, X)


def _decide(xp, Yhat):
    if TASK == "classes":
        return xp.argmax(Yhat, axis=1)
    if TASK == "binary":
        return _as_index(xp, Yhat >= 0.5)
    return Yhat


def _accuracy(xp, params, X, Y):
    """The fraction of right predictions on checked X and Y (Y one-hot for "classes",
    0/1 for "binary": a target other than 0 or 1 is never predicted), a float."""
    Yhat = _output(xp, params, X)
    if TASK == "classes":
        hits = xp.argmax(Yhat, axis=1) == xp.argmax(Y, axis=1)
        counted = hits.shape[0]
    else:
        # NaN in Ŷ predicts 0, as predict does
        hits = xp.where(Yhat >= 0.5, Y == 1, Y == 0)
        counted = hits.shape[0] * hits.shape[1]
    return int(xp.sum(_as_index(xp, hits))) / counted  # exact: a count


def _y_shape_error(shape, m):
    """The ValueError of targets of the wrong shape (a hint for a column of labels)."""
    n = LAYER_SIZES[-1]
    hint = ""
    if LABELS and tuple(shape) == (m, 1):
        hint = (
            f": class labels are taken as {m} integers of shape ({m},) (Y.ravel()), "
            f"or as one-hot rows of shape ({m}, {n})"
        )
    return ValueError(f"Y must have shape ({m}, {n}), found {tuple(shape)}{hint}")


def _validation(check, validation_data):
    """check(X_val, Y_val) -> the checked pair, its errors named as validation_data's."""
    try:
        X_val, Y_val = validation_data
    except (TypeError, ValueError):
        raise TypeError(
            "validation_data must be a pair (X_val, Y_val), found "
            f"{type(validation_data).__name__}"
        ) from None
    try:
        return check(X_val, Y_val)
    except (TypeError, ValueError) as exc:
        message = str(exc).replace("X ", "X_val ").replace("Y ", "Y_val ")
        raise type(exc)(f"validation_data: {message}") from None


# --- training ---------------------------------------------------------------------------


def _training_batch(m):
    """A batch to train on: with batchnorm, two examples at least (as in PyTorch)."""
    if m < MIN_BATCH:
        raise ValueError(
            f"training normalizes with the batch's statistics: a batch needs at least "
            f"{MIN_BATCH} examples, found {m} (the variance of one example is not "
            "defined)"
        )


def _whole(value, name, low):
    """value as an int ≥ low: any integer (Python's, NumPy's, ...) but a bool."""
    try:
        number = None if isinstance(value, bool) else type(value).__index__(value)
    except (AttributeError, TypeError):
        number = None
    what = "a non-negative int" if low == 0 else "a positive int"
    if number is None:
        why = " (the batches are drawn from default_rng(seed + epoch): a seed repeats a run)"
        raise TypeError(
            f"{name} must be {what}, found {value!r}{why if name == 'seed' else ''}"
        )
    if number < low:
        raise ValueError(f"{name} must be {what}, found {number}")
    return number


def _fit_counts(epochs, batch_size, seed):
    """fit's epochs, batch_size and seed as ints, checked."""
    return (
        _whole(epochs, "epochs", 0),
        _whole(batch_size, "batch_size", 1),
        _whole(seed, "seed", 0),
    )


def _batch_ranges(n, batch_size):
    """(start, size) of each batch of an epoch over n shuffled examples: batch_size
    each, the last one smaller; a batch under MIN_BATCH (a last batch of one, with
    batchnorm) is left out."""
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        if size >= MIN_BATCH:
            yield start, size


def _trainable_batches(n, batch_size):
    """Refuse a fit whose batches would all be left out (under MIN_BATCH examples: one
    example, with batchnorm), which would train nothing and report a loss of 0."""
    if batch_size < MIN_BATCH:
        raise ValueError(
            f"batch_size must be at least {MIN_BATCH}, found {batch_size}: training "
            "normalizes with the batch's statistics, and the variance of one example "
            "is not defined"
        )
    if n < MIN_BATCH:
        raise ValueError(
            f"fit needs at least {MIN_BATCH} examples to train on, found {n}: training "
            "normalizes with the batch's statistics, and the variance of one example "
            "is not defined"
        )


def _fit_options(early_stopping, callback, validation_data):
    """fit's early_stopping (None or an int ≥ 1) and callback (None or a callable),
    checked before anything is trained."""
    if early_stopping is not None:
        early_stopping = _whole(early_stopping, "early_stopping", 1)
        if validation_data is None:
            raise ValueError(
                f"early_stopping={early_stopping} stops when the validation loss has "
                f"not improved for {early_stopping} epochs: pass "
                "validation_data=(X_val, Y_val), or leave early_stopping out"
            )
    if callback is not None and not callable(callback):
        raise TypeError(
            "callback must be a function fn(epoch, history) (return True to stop), "
            f"found {type(callback).__name__}"
        )
    return early_stopping, callback


def _stops(answer):
    """Whether a callback's answer says stop: True stops, False or None goes on."""
    import numpy as np  # NumPy's bool is an answer too

    if answer is None or isinstance(answer, (bool, np.bool_)):
        return bool(answer)
    raise TypeError(
        "callback must return True (stop training), False or None (go on), found "
        f"{type(answer).__name__}"
    )


_REDRAW_S = 0.1  # seconds between redraws of the progress line on a terminal


def _duration(seconds):
    """seconds as 4.2s, 3:07 or 1:02:07."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, s = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{s:02}" if hours else f"{minutes}:{s:02}"


def _metrics(history):
    """The last epoch's numbers of history, as "loss 0.1234, accuracy 0.9" (the
    learning rate is in history["lr"], not on the line)."""
    return ", ".join(
        f"{k} {v[-1]:.4g}"
        for k, v in history.items()
        if isinstance(v, list) and k != "lr"
    )


def _progress(verbose, epochs, steps):
    """(batch, epoch, say): fit's display, on sys.stdout; with verbose False, three
    functions that do nothing.

    On a terminal, one line per epoch that batch(epoch, b, losses) redraws in place
    with "\\r" (epoch e/E, batches b/B, the epoch's loss so far, the time since fit
    began and the ETA of all `epochs`, at most every _REDRAW_S seconds: each redraw
    reads the losses, one synchronisation with the device) and epoch(e, history)
    finishes with the epoch's numbers and time; elsewhere (a file, a pipe) only
    epoch(e, history) writes, one line "epoch e/E: loss …" per epoch, the same text
    in every run. say(text) writes a line of its own. The clock only changes what is
    shown, never what is computed.
    """
    import sys
    import time

    if not verbose:
        return _nothing, _nothing, _nothing
    stream = sys.stdout
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        tty = False
    began = time.perf_counter()
    shown = {"at": None, "width": 0, "read": 0, "total": 0.0, "counted": 0}

    def draw(text, end):
        pad = " " * max(shown["width"] - len(text), 0)
        stream.write(f"\r{text}{pad}{end}")
        stream.flush()
        shown["width"] = 0 if end else len(text)

    def batch(epoch, b, losses):
        if not tty or b == steps:  # the epoch's line follows
            return
        now = time.perf_counter()
        if shown["at"] is not None and now - shown["at"] < _REDRAW_S:
            return
        shown["at"] = now
        for L, size in losses[shown["read"] :]:
            shown["total"] += float(L) * size
            shown["counted"] += size
        shown["read"] = len(losses)
        done = epoch * steps + b
        elapsed = now - began
        eta = elapsed / done * (epochs * steps - done)
        loss = shown["total"] / max(shown["counted"], 1)
        draw(
            f"epoch {epoch + 1}/{epochs}: batch {b}/{steps}, loss {loss:.4g}, "
            f"{_duration(elapsed)} elapsed, ETA {_duration(eta)}",
            "",
        )

    def epoch(e, history):
        shown.update(read=0, total=0.0, counted=0)
        if tty:
            elapsed = _duration(time.perf_counter() - began)
            text = f"epoch {e + 1}/{epochs}: {steps}/{steps} batches, "
            draw(f"{text}{_metrics(history)}, {elapsed}", "\n")
        else:
            print(f"epoch {e + 1}/{epochs}: {_metrics(history)}", file=stream)

    def say(text):
        if tty:
            draw(text, "\n")
        else:
            print(text, file=stream)

    return batch, epoch, say


def _nothing(*args):
    pass


def _train(
    xp,
    params,
    state,
    X,
    Y,
    *,
    epochs,
    batch_size,
    seed,
    validation,
    verbose,
    batches,
    step,
    early_stopping=None,
    callback=None,
    keep=None,
    restore=None,
):
    """fit's epochs on checked X and Y: (params, state, history).

    Each epoch shuffles the examples with NumPy's default_rng(seed + epoch);
    batches(order) gives the function (start, size) -> (X_batch, Y_batch) that gathers
    the epoch's batches, and step(params, state, X_batch, Y_batch) -> (params, state,
    loss) trains on one. history["loss"] is the mean of the batch losses, weighted by
    batch size; history["lr"] the learning rate of each epoch's first step
    (learning_rate(t), the spec's schedule); classifiers (TASK "classes" or "binary")
    get history["accuracy"] on all of X after each epoch, and validation=(X_val,
    Y_val), checked, adds "val_loss" (and "val_accuracy"). verbose shows the
    progress (see _progress).

    callback(epoch, history) runs after each epoch (epoch counted from 0, history
    holding that epoch's numbers): True stops training. early_stopping=N (with
    validation) stops after N epochs in a row without a val_loss lower than the best
    so far (NaN is never lower); keep(params, state) -> kept copies what the best
    epoch leaves, restore(params, state, kept) -> (params, state) brings it back at
    the end, whether training stopped early, by the callback or after all epochs.
    history["best_epoch"] is that epoch's index in the lists, history["stopped_early"]
    whether early stopping ended training.
    """
    import numpy as np  # the host generator of the shuffles, also in the array-API module

    n = X.shape[0]
    _trainable_batches(n, batch_size)
    ranges = list(_batch_ranges(n, batch_size))
    classifier = TASK in ("classes", "binary")
    history = {"loss": [], "lr": []}
    if classifier:
        history["accuracy"] = []
    if validation is not None:
        X_val, Y_val = validation
        history["val_loss"] = []
        if classifier:
            history["val_accuracy"] = []
    if early_stopping is not None:
        history["best_epoch"] = None
        history["stopped_early"] = False
    show_batch, show_epoch, say = _progress(verbose, epochs, len(ranges))
    kept, waited, ended = None, 0, "finished"
    last = -1  # the last epoch trained
    for epoch in range(epochs):
        history["lr"].append(learning_rate(int(state["t"])))  # the epoch's first step
        order = np.random.default_rng(seed + epoch).permutation(n)
        batch = batches(order)
        losses = []
        for b, (start, size) in enumerate(ranges, 1):
            params, state, L = step(params, state, *batch(start, size))
            losses.append((L, size))  # read once per epoch: no synchronisation a step
            show_batch(epoch, b, losses)
        last = epoch
        counted = sum(size for _, size in losses)
        total = sum(float(L) * size for L, size in losses)
        history["loss"].append(total / max(counted, 1))
        if classifier:
            history["accuracy"].append(_accuracy(xp, params, X, Y))
        if validation is not None:
            history["val_loss"].append(_inference_loss(xp, params, X_val, Y_val))
            if classifier:
                history["val_accuracy"].append(_accuracy(xp, params, X_val, Y_val))
        if early_stopping is not None:
            best = history["best_epoch"]
            if best is None or history["val_loss"][-1] < history["val_loss"][best]:
                history["best_epoch"], waited = epoch, 0
                kept = keep(params, state)
            else:
                waited += 1
        show_epoch(epoch, history)
        if callback is not None and _stops(callback(epoch, history)):
            ended = "stopped by the callback"
            break
        if early_stopping is not None and waited >= early_stopping:
            history["stopped_early"] = epoch + 1 < epochs
            ended = "stopped early" if history["stopped_early"] else ended
            break
    best = history.get("best_epoch")
    if kept is not None and best != last:
        params, state = restore(params, state, kept)
        say(
            f"{ended}: restored epoch {best + 1}, the one with the lowest val_loss "
            f"({history['val_loss'][best]:.4g})"
        )
    return params, state, history
