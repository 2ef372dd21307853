"""Templates rendered once per shape, each message's values filled in afterwards: most of what writing a message
cost was Jinja doing the same work again for every payment.

A value a template only prints (`{{ amount }}`) or tests for truth (`{% if partial %}`, `{{ a or b }}`,
`{{ "Paid on" if date_only else "Received" }}`) changes nothing but the text printed in its place: two messages
whose such values are equally truthy read the same around them. So the template is rendered once with a marker in
each such value's place, and every message of that shape is the pieces between the markers, joined with its own
values escaped exactly as Jinja escapes them (`finalize`, then HTML escaping in an autoescaped template). A value
used any other way (`"Write to " ~ reply_to`, a filter, a comparison) shapes the text itself: it is rendered in as
it is, and is part of the cache's key. A template that calls anything, loops or sets variables is rendered the
ordinary way every time, as is a message whose shape is new once a template has MAX_SHAPES of them.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from jinja2 import Environment, Template, nodes
from markupsafe import escape

#: Shapes kept per template. A value that shapes the text and differs per message (a staff note in a comparison)
#: would otherwise fill memory; past it, a new shape is rendered the ordinary way.
MAX_SHAPES = 64
_NONCE = secrets.token_hex(6)  # no text a message is made of contains a marker by chance
_MARKER = re.compile(f"\ue000{_NONCE}:(\\d+)\ue001")
#: Expressions that depend on nothing but their operands' values (Call, a loop, `| random` do not).
_PURE = (nodes.Name, nodes.Const, nodes.TemplateData, nodes.Concat, nodes.Compare, nodes.Operand, nodes.BinExpr,
         nodes.UnaryExpr, nodes.CondExpr, nodes.Filter, nodes.Test, nodes.Getattr, nodes.Getitem, nodes.Slice,
         nodes.Tuple, nodes.List, nodes.Dict, nodes.Pair)
#: Falsy values, told apart in a key by type and representation (`0` prints differently from `False` and `""`).
_FALSY = (type(None), str, bool, int, float, Decimal)


class NotFillable(Exception):
    """The template does something the shape cannot stand for: it is rendered the ordinary way."""


@dataclass(slots=True)
class Plan:
    filled: tuple[str, ...]  # printed or tested only: a marker in the shape, the value filled in
    keyed: tuple[str, ...]   # used otherwise: rendered in, its value part of the key
    output: Callable[[Any], str]  # what Jinja prints for a value: str(finalize(v)), or escape(finalize(v))
    shapes: dict[tuple[Any, ...], tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)


def render(template: Template, data: Mapping[str, Any]) -> str:
    """`template.render(data)`, the same text, from the template's shape for these values when it has one."""
    plan = _plan(template)
    if plan is None:
        return template.render(data)
    try:
        key = (*(_exactly(data[n]) for n in plan.keyed), *(_truth(data[n]) for n in plan.filled))
        shape = plan.shapes.get(key)
    except (KeyError, TypeError):  # a missing value (Jinja says which), one that cannot be a key
        return template.render(data)
    if shape is None:
        if len(plan.shapes) >= MAX_SHAPES:
            return template.render(data)
        shape = plan.shapes[key] = _shape(template, plan, data)
    pieces, names = shape
    out = [pieces[0]]
    for name, piece in zip(names, pieces[1:], strict=True):
        out += (plan.output(data[name]), piece)
    return "".join(out)


def _truth(value: Any) -> Any:
    if value:
        return True
    if not isinstance(value, _FALSY):
        raise TypeError(f"a falsy {type(value).__name__} is not told apart in a key")
    return _exactly(value)


def _exactly(value: Any) -> tuple[type, str]:
    """A value as it reads: equal values may not (`0` and `False`, `Decimal("0")` and `Decimal("0.00")`)."""
    return type(value), repr(value)


def _shape(template: Template, plan: Plan, data: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The template rendered with a marker for each truthy filled value: the pieces between them, and whose
    value goes after each piece."""
    marked = dict(data) | {name: _marker(i) for i, name in enumerate(plan.filled) if data[name]}
    parts = _MARKER.split(template.render(marked))
    return tuple(parts[0::2]), tuple(plan.filled[int(i)] for i in parts[1::2])


def _marker(i: int) -> str:
    return f"\ue000{_NONCE}:{i}\ue001"


@lru_cache(maxsize=1024)
def _plan(template: Template) -> Plan | None:
    """How `template` (and what it includes) uses each value; None if it cannot be rendered by shape. Decided
    once per template: templates are read once per process (`bot.messages`)."""
    env = template.environment
    try:
        autoescape = _autoescape(env, template.name)
        safe, keyed = set[str](), set[str]()
        _statements(env, template.name, autoescape, safe, keyed, seen=set())
    except NotFillable:
        return None
    finalize = env.finalize or (lambda value: value)
    plan = Plan(filled=tuple(sorted(safe - keyed)), keyed=tuple(sorted(keyed)),
                output=(lambda v: str(escape(finalize(v)))) if autoescape else (lambda v: str(finalize(v))))
    if any(plan.output(_marker(i)) != _marker(i) for i in range(len(plan.filled))):
        return None  # the finalizer or escaping would change a marker: it could not be found again
    return plan


def _autoescape(env: Environment, name: str | None) -> bool:
    if name is None or env.loader is None:
        raise NotFillable("a template made from a string")
    return bool(env.autoescape(name) if callable(env.autoescape) else env.autoescape)


def _statements(env: Environment, name: str | None, autoescape: bool, safe: set[str], keyed: set[str],
                seen: set[str]) -> None:
    if name in seen:
        raise NotFillable("a template that includes itself")
    if _autoescape(env, name) != autoescape:  # a marker's value would be escaped one way here, another there
        raise NotFillable("an included template escaped otherwise")
    seen.add(name)  # type: ignore[arg-type]
    source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr, arg-type]
    for node in _body(env.parse(source)):
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if not isinstance(child, nodes.TemplateData):
                    _printed(child, safe, keyed)
        elif isinstance(node, nodes.If):
            _tested(node.test, safe, keyed)
        elif isinstance(node, nodes.Include) and isinstance(node.template, nodes.Const) \
                and node.with_context and not node.ignore_missing:
            _statements(env, node.template.value, autoescape, safe, keyed, seen)
        else:
            raise NotFillable(f"{type(node).__name__} in {name}")


def _body(node: nodes.Node) -> Iterator[nodes.Node]:
    """The statements, those inside `{% if %}` branches too."""
    for child in node.body if isinstance(node, nodes.Template) else ():
        yield from _flat(child)


def _flat(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    if isinstance(node, nodes.If):
        for branch in (*node.body, *node.elif_, *node.else_):
            yield from _flat(branch)


def _printed(node: nodes.Node, safe: set[str], keyed: set[str]) -> None:
    """An expression whose value is printed: a name, or a choice between printed expressions."""
    if isinstance(node, nodes.Name):
        safe.add(node.name)
    elif isinstance(node, (nodes.And, nodes.Or)):
        _printed(node.left, safe, keyed)
        _printed(node.right, safe, keyed)
    elif isinstance(node, nodes.CondExpr) and node.expr2 is not None:
        _tested(node.test, safe, keyed)
        _printed(node.expr1, safe, keyed)
        _printed(node.expr2, safe, keyed)
    elif not isinstance(node, nodes.Const):
        _shaping(node, keyed)


def _tested(node: nodes.Node, safe: set[str], keyed: set[str]) -> None:
    """An expression whose value is only tested for truth."""
    if isinstance(node, nodes.Name):
        safe.add(node.name)
    elif isinstance(node, nodes.Not):
        _tested(node.node, safe, keyed)
    elif isinstance(node, (nodes.And, nodes.Or)):
        _tested(node.left, safe, keyed)
        _tested(node.right, safe, keyed)
    elif isinstance(node, nodes.CondExpr) and node.expr2 is not None:
        for part in (node.test, node.expr1, node.expr2):
            _tested(part, safe, keyed)
    elif not isinstance(node, nodes.Const):
        _shaping(node, keyed)


def _shaping(node: nodes.Node, keyed: set[str]) -> None:
    """An expression that makes something of its values: each is part of the key, if the result depends on
    nothing else."""
    for part in (node, *node.find_all(nodes.Node)):
        if not isinstance(part, _PURE) or isinstance(part, nodes.Filter) and part.name == "random":
            raise NotFillable(f"{type(part).__name__} in an expression")
        if isinstance(part, nodes.Name):
            keyed.add(part.name)
