"""The spec's validator: the top-level keys, the layers (each checked by its kind, through
layer_registry), activations and losses (built-in or custom expressions), the optimizer
and its settings, the task, and whether the output layer suits the loss. Every problem is
collected; a spec with any is raised as one SpecError listing them all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from .. import activations, layer_registry, losses, optimizers, schedules
from ..errors import ExpressionError, Problem, SpecError, echo, number
from ..layer_registry import LayerAt, LayerKind
from .checks import MAX_LAYERS, MAX_UNITS, Checker, _suggest
from .model import Layer, LayerSpec, Loc, OpSpec, OptimizerSpec, ScheduleSpec, Spec
from .read import Node, kind_of

TOP_KEYS = ("name", "input", "layers", "loss", "l2", "optimizer", "init", "task")
OPTIMIZER_KEYS = (
    "schedule",
    "clip_norm",
)  # in the optimizer mapping, beside its settings


def _loss_fits(output: OpSpec, loss: str) -> bool:
    """Whether a built-in loss suits the output activation (see output_checks), for a
    suggestion: on a softmax, only a loss made for one."""
    opdef = losses.LOSSES.get(activations.canonical(loss))
    if opdef is None or output.custom:
        return opdef is not None
    softmax = output.name == activations.SOFTMAX
    if (opdef.output == "softmax") != softmax:
        return False
    return losses.output_gives(
        opdef.output, softmax, activations.unit_range(output.name)
    )


class Validator(Checker):
    """Checks a spec's tree, collecting every problem."""

    def op(
        self,
        node: Node,
        table: dict[str, activations.OpDef],
        kind: str,
        output: OpSpec | None = None,
    ) -> OpSpec | None:
        """An activation or loss: a name, {name, params...} or {name, expr, params...}.

        `output` is the output layer's activation, for a loss: a suggestion for a
        misspelt loss prefers one that suits it.
        """
        v = node.value
        if isinstance(v, str):
            name_node, params, expr_node = node, {}, None
        elif isinstance(v, dict):
            if "name" not in v:
                self.err(
                    node.loc,
                    f"a {kind} mapping needs a 'name'",
                    f"e.g. {{name: {kind}_name}}",
                )
                return None
            name_node = v["name"]
            expr_node = v.get("expr")
            params = {k: n for k, n in v.items() if k not in ("name", "expr")}
        else:
            self.err(
                node.loc,
                f"{kind} must be a name or a mapping, found {kind_of(v)}",
                f"known: {', '.join(sorted(table))}",
            )
            return None
        name = name_node.value
        if not isinstance(name, str) or not name:
            self.err(name_node.loc, f"{kind} name must be text, found {kind_of(name)}")
            return None
        if expr_node is not None:
            return self.custom_op(node, name, expr_node, params, kind)
        canon = activations.canonical(name)
        if canon not in table:
            choices = sorted(
                [*table, *(k for k, c in activations.ALIASES.items() if c in table)]
            )
            fits = functools.partial(_loss_fits, output) if output else lambda _: True
            hint = _suggest(name, choices, fits) or (
                f"a custom {kind} is a mapping with its expression:"
                f" {{name: my_{kind}, expr: {echo(name)}}}"
                if not name.isidentifier()  # an expression where a name goes
                else f"known: {', '.join(choices)}"
            )
            self.err(name_node.loc, f"unknown {kind} {echo(name)}", hint)
            return None
        opdef = table[canon]
        values: dict[str, float] = dict(opdef.params)
        ok = True
        for key, pnode in params.items():
            ploc = node.key_locs.get(key, pnode.loc)
            if key not in opdef.params:
                allowed = list(opdef.params)
                hint = _suggest(key, allowed) or (
                    f"{canon} takes: {', '.join(allowed)}"
                    if allowed
                    else f"{canon} takes none"
                )
                self.err(ploc, f"unknown parameter {key!r} for {kind} {canon!r}", hint)
                ok = False
                continue
            value = self.parameter(pnode)
            if value is None:
                ok = False
            elif (
                key in ("alpha", "delta") and value < 0 or key == "delta" and value == 0
            ):
                self.err(pnode.loc, f"{key} must be positive, found {number(value)}")
                ok = False
            else:
                values[key] = value
        if not ok:
            return None
        return OpSpec(canon, tuple(values.items()), None, node.loc)

    def custom_op(
        self,
        node: Node,
        name: str,
        expr_node: Node,
        params: dict[str, Node],
        kind: str,
    ) -> OpSpec | None:
        from ..sym import parse  # SymPy is only needed for custom expressions

        if not name.isidentifier():
            self.err(
                node.value["name"].loc,
                f"custom {kind} name {echo(name)} is not an identifier",
            )
            return None
        canon = activations.canonical(name)
        table = activations.ACTIVATIONS if kind == "activation" else losses.LOSSES
        if canon in table:
            self.err(
                node.value["name"].loc,
                f"{name!r} is a built-in {kind}; a custom expression needs its own name",
                f"e.g. my_{name}",
            )
            return None
        variables = ("z",) if kind == "activation" else ("yhat", "y")
        values: dict[str, float] = {}
        ok = True
        for key, pnode in params.items():
            ploc = node.key_locs.get(key, pnode.loc)
            if (
                not key.isidentifier()
                or key in variables
                or key in parse.FUNCTIONS
                or key in parse.CONSTANTS
            ):
                self.err(
                    ploc, f"parameter name {key!r} is not usable", "pick another name"
                )
                ok = False
                continue
            value = self.parameter(pnode)
            ok = ok and value is not None
            if value is not None:
                values[key] = value
        text = expr_node.value
        if not isinstance(text, str):
            self.err(
                expr_node.loc, f"expr must be text, found {kind_of(text)}", "quote it"
            )
            return None
        if not ok:
            return None
        symbols = {
            v: getattr(activations, "a" if v == "yhat" else v) for v in variables
        }
        try:
            parse.parse(text, symbols, {k: parse.number(v) for k, v in values.items()})
        except ExpressionError as exc:
            self.err(expr_node.loc, f"expression rejected: {exc}")
            return None
        if not self.all_used(node, text, values):
            return None
        return OpSpec(name, tuple(values.items()), text, node.loc)

    def all_used(self, node: Node, text: str, values: dict[str, float]) -> bool:
        """Whether expr reads every named parameter: one that it never reads is most
        likely a misspelling (`alpah: 0.1`) or a forgotten edit, and is refused."""
        from ..sym import parse

        read = parse.names(text)
        unused = [k for k in values if k not in read]
        for key in unused:
            self.err(
                node.key_locs.get(key, node.loc),
                f"parameter {key!r} is not used in expr {echo(text)}",
                f"use {key} in expr, or remove the key",
            )
        return not unused

    def optimizer(self, node: Node | None) -> OptimizerSpec | None:
        if node is None:
            return OptimizerSpec(
                "sgd", tuple(optimizers.OPTIMIZERS["sgd"].defaults().items())
            )
        v = node.value
        if isinstance(v, str):
            name_node, params = node, {}
        elif isinstance(v, dict) and "name" in v:
            name_node = v["name"]
            params = {k: n for k, n in v.items() if k != "name"}
        else:
            self.err(
                node.loc,
                f"optimizer must be a name or a mapping with a name, found {kind_of(v)}",
                "e.g. optimizer: {name: adam, learning_rate: 0.001}",
            )
            return None
        name = name_node.value
        if not isinstance(name, str) or name not in optimizers.OPTIMIZERS:
            hint = _suggest(name, list(optimizers.OPTIMIZERS)) or "known: " + ", ".join(
                optimizers.OPTIMIZERS
            )
            self.err(name_node.loc, f"unknown optimizer {echo(name)}", hint)
            return None
        definition = optimizers.OPTIMIZERS[name]
        values = definition.defaults()
        extra = {k: params.pop(k) for k in OPTIMIZER_KEYS if k in params}
        for key, pnode in params.items():
            ploc = node.key_locs.get(key, pnode.loc)
            if key not in values:
                takes = [*values, *OPTIMIZER_KEYS]
                hint = _suggest(key, takes) or f"{name} takes: {', '.join(takes)}"
                self.err(
                    ploc, f"unknown parameter {key!r} for optimizer {name!r}", hint
                )
                continue
            if isinstance(values[key], bool):
                if not isinstance(pnode.value, bool):
                    self.err(
                        pnode.loc,
                        f"{key} must be true or false, found {kind_of(pnode.value)}",
                    )
                else:
                    values[key] = pnode.value
                continue
            value = self.real(pnode, 0.0)
            if value is None:
                continue
            problem = definition.setting(key).problem(value)
            if problem:
                self.err(pnode.loc, f"{problem}, found {number(value)}")
            else:
                values[key] = value
        clip = None
        if "clip_norm" in extra:
            clip = self.real(extra["clip_norm"])
            if clip is not None and clip <= 0:
                self.err(
                    extra["clip_norm"].loc,
                    f"clip_norm must be positive, found {number(clip)}",
                    "the largest global gradient norm, e.g. clip_norm: 1.0",
                )
                clip = None
        schedule = None
        if "schedule" in extra:
            lr = values.get("learning_rate")
            schedule = self.schedule(extra["schedule"], float(lr) if lr else None)
            if schedule is None:
                return None
        return OptimizerSpec(name, tuple(values.items()), schedule, clip)

    def schedule(self, node: Node, lr: float | None) -> ScheduleSpec | None:
        """`schedule: {name: cosine, t_max: 100, warmup: 5}` in the optimizer mapping."""
        v = node.value
        example = "e.g. schedule: {name: cosine, t_max: 1000}"
        if not isinstance(v, dict) or "name" not in v:
            self.err(
                node.loc,
                f"schedule must be a mapping with a name, found {kind_of(v)}",
                example,
            )
            return None
        name_node = v["name"]
        name = name_node.value
        known = list(schedules.SCHEDULES)
        if not isinstance(name, str) or name not in schedules.SCHEDULES:
            hint = _suggest(name, known) or "known: " + ", ".join(known)
            self.err(name_node.loc, f"unknown schedule {echo(name)}", hint)
            return None
        entry = schedules.SCHEDULES[name]
        values = entry.defaults()
        takes = [s.name for s in entry.all_settings()]
        ok = True
        for key, pnode in v.items():
            if key == "name":
                continue
            ploc = node.key_locs.get(key, pnode.loc)
            if key not in takes:
                hint = _suggest(key, takes) or f"{name} takes: {', '.join(takes)}"
                self.err(ploc, f"unknown parameter {key!r} for schedule {name!r}", hint)
                ok = False
                continue
            value = self.real(pnode)
            if value is None:
                ok = False
                continue
            setting = entry.setting(key)
            problem = setting.problem(value)
            if problem:
                self.err(pnode.loc, f"{problem}, found {number(value)}")
                ok = False
            else:
                values[key] = int(value) if setting.integer else value
        missing = [
            s.name for s in entry.settings if s.name not in values and s.name not in v
        ]
        for key in missing:
            self.err(
                node.loc,
                f"schedule {name!r} needs {key}",
                f"e.g. schedule: {{name: {name}, {key}: 100}}",
            )
        if not ok or missing:
            return None
        problem = entry.check(values, lr) if lr is not None else None
        if problem:
            self.err(node.loc, problem, "lower it, or raise learning_rate")
            return None
        order = [s.name for s in entry.all_settings()]
        return ScheduleSpec(name, tuple((k, values[k]) for k in order))

    def spec(self, root: Node) -> Spec | None:
        if not isinstance(root.value, dict):
            self.err(
                root.loc,
                "a spec must be a mapping of keys (name, input, layers, loss),"
                f" found {kind_of(root.value)}",
            )
            return None
        self.keys(root, TOP_KEYS, ("name", "input", "layers", "loss"))
        top = root.value
        name = self.name(top["name"]) if "name" in top else None
        n_in = self.input(top["input"]) if "input" in top else None
        self.width = n_in
        layers = self.layers(top["layers"]) if "layers" in top else None
        output = layers[-1].activation if layers else None  # type: ignore[union-attr]
        loss = (
            self.op(top["loss"], losses.LOSSES, "loss", output)
            if "loss" in top
            else None
        )
        l2 = self.real(top["l2"], 0.0) if "l2" in top else 0.0
        optimizer = self.optimizer(top.get("optimizer"))
        init = "auto"
        if "init" in top:
            v = top["init"].value
            if v not in activations.INITS:
                hint = _suggest(v, activations.INITS) or "known: " + ", ".join(
                    activations.INITS
                )
                self.err(top["init"].loc, f"unknown init {echo(v)}", hint)
            else:
                init = v
        task_node = top.get("task")
        task = self.task(task_node) if task_node is not None else None
        if layers and loss:
            self.output_checks(layers, loss, task_node)
        if self.problems or None in (name, n_in, layers, loss, l2, optimizer):
            return None
        return Spec(  # type: ignore[arg-type] - none of them is None here
            name,
            n_in,
            layers,
            loss,
            l2,
            optimizer,
            init,
            self.file,
            task,
            task_node.loc if task_node is not None else Loc(self.file),
        )

    def input(self, node: Node) -> int | tuple[int, int, int] | None:
        """`input`: a width (features per example) or an image [C, H, W]."""
        if not isinstance(node.value, list):
            return self.integer(node, 1, MAX_UNITS)
        dims = node.value
        if len(dims) != 3:
            self.err(
                node.loc,
                f"an image input is [channels, height, width], found {len(dims)}"
                " numbers",
                "e.g. input: [1, 8, 8]; a feature vector is one integer, input: 64",
            )
            return None
        values = [self.integer(d, 1, MAX_UNITS) for d in dims]
        if None in values:
            return None
        c, h, w = values  # type: ignore[misc]
        if c * h * w > MAX_UNITS:  # type: ignore[operator]
            self.err(
                node.loc,
                f"an image of {c}×{h}×{w} = {c * h * w} values is larger than the"  # type: ignore[operator]
                f" {MAX_UNITS} supported",
                "use a smaller image",
            )
            return None
        return (c, h, w)  # type: ignore[return-value]

    def layers(self, node: Node) -> tuple[LayerSpec, ...] | None:
        if not isinstance(node.value, list):
            self.err(
                node.loc,
                f"layers must be a list, found {kind_of(node.value)}",
                "each item: {units: N, activation: NAME}",
            )
            return None
        if not node.value:
            self.err(node.loc, "layers is empty; a network needs at least one layer")
            return None
        if len(node.value) > MAX_LAYERS:
            self.err(
                node.loc,
                f"at most {MAX_LAYERS} layers are supported, found {len(node.value)}",
                "generation time grows with depth: about 4 s for 100 layers",
            )
            return None
        out: list[Layer] = []
        width = self.width
        image = None if width is None else isinstance(width, tuple)
        hidden_by = "input"  # the key path of what hid the width, where it is hidden
        last = len(node.value) - 1
        for i, item in enumerate(node.value):
            if not isinstance(item.value, dict):
                self.err(
                    item.loc,
                    f"a layer must be a mapping, found {kind_of(item.value)}",
                    "e.g. {units: 8, activation: relu}",
                )
                continue
            kind = self.layer_kind(item)
            if kind is None:
                continue
            if not kind.output and i == last:
                self.err(
                    item.loc,
                    "the last layer is the output layer: it must be dense, found"
                    f" {item.value['type'].value}",
                    "end with {units: N, activation: NAME}",
                )
                continue
            at = LayerAt(i + 1, i == last, width, image, hidden_by)
            layer = kind.validate(self, item, at)
            if layer is not None:
                out.append(layer)
            # the next layer's input, even if this one failed: its size where it can
            # be read, else its form (an image after conv2d), so the checks go on
            known = kind.item_width(item, width)
            if known is None and width is not None:  # this layer's error hid it
                hidden_by = f"layers[{i}]"
            width = known
            if width is not None:
                image = isinstance(width, tuple)
            elif kind.gives_image is not None:
                image = kind.gives_image
        return tuple(out) if len(out) == len(node.value) else None

    def layer_kind(self, item: Node) -> LayerKind | None:
        """The layer's kind: the one its `type` names, or dense without one."""
        tnode = item.value.get("type")
        if tnode is None:
            return layer_registry.named(layer_registry.DENSE)
        name = tnode.value
        kind = layer_registry.for_type(name) if isinstance(name, str) else None
        if kind is None:
            types = layer_registry.types()
            hint = _suggest(name, types) or "known: " + ", ".join(types)
            self.err(tnode.loc, f"unknown layer type {echo(name)}", hint)
        return kind

    def output_checks(
        self, layers: tuple[Layer, ...], loss: OpSpec, task: Node | None
    ) -> None:
        """What the loss's traits and the spec's task need of the output layer; a
        custom output's range is sampled in derive (derive._check_output_range)."""
        out = layers[-1].activation  # type: ignore[union-attr] - the last is dense
        softmax = out.name == activations.SOFTMAX and not out.custom
        unit = out.custom or activations.unit_range(out.name)
        need = "any" if loss.custom else losses.LOSSES[loss.name].output
        if not losses.output_gives(need, softmax, unit):
            self.err(loss.loc, *OUTPUT_NEEDS[need](loss.name, out.name))
        if task is not None and task.value in losses.TASKS:
            need = losses.TASK_NEEDS[task.value]
            if not losses.output_gives(need, softmax, unit):
                message, hint = OUTPUT_NEEDS[need](f"task {task.value!r}", out.name)
                self.err(task.loc, message, hint + ", or task: values")

    def task(self, node: Node) -> str | None:
        """The spec's `task:` (what predict returns), overriding derive's decision."""
        v = node.value
        if v in losses.TASKS:
            return v
        hint = _suggest(v, losses.TASKS) or (
            "classes: predict gives class indices; binary: 0/1 per output;"
            " values: Ŷ itself"
        )
        self.err(
            node.loc,
            f"task must be one of {', '.join(losses.TASKS)}, found {kind_of(v)}",
            hint,
        )
        return None


# what a loss or a task ("task 'classes'") needs of the output layer, as a message and a fix
OUTPUT_NEEDS: dict[str, Callable[[str, str], tuple[str, str]]] = {
    "softmax": lambda who, out: (
        f"{who} needs a softmax output layer, found {out!r}",
        "set the last layer's activation to softmax",
    ),
    "unit_interval": lambda who, out: (
        f"{who} needs predictions in (0, 1), found output activation {out!r}",
        "use a sigmoid output layer",
    ),
}


def _validated(tree: Node | None, problems: list[Problem], file: str) -> Spec:
    if tree is None:
        raise SpecError(problems)
    validator = Validator(file)
    validator.problems.extend(problems)
    spec = validator.spec(tree)
    if validator.problems or spec is None:
        raise SpecError(sorted(validator.problems, key=lambda p: (p.line, p.col)))
    return spec
