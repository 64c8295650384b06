"""Backward explained: the recorded graph of a loss, node by node, with the gradients sent.

``explain(loss)`` runs ``backward(retain_graph=True)`` once while watching it through
``tinymf.tensor.backward_observers`` and lists every node in the order backward visits it
(the reverse of the order the forward pass made them), with its operation, the shapes going
in and out, the gradient it received and the gradient it sent to each input. Afterwards every
``.grad`` is put back as it was, unless ``keep_grad=True`` asks to keep what backward added.

``to_dot(loss)`` writes the same graph as Graphviz DOT text (no Graphviz needed for that);
``render(loss, path)`` turns it into an image when Graphviz's ``dot`` program is installed,
and :class:`Graph` shows itself inline in a notebook when it can.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# the names, not the module: the package's ``tinymf.tensor`` attribute is the function
from .tensor import Node, Tensor, backward_observers
from .tensor import backward as _backward

__all__ = [
    "Edge",
    "Explanation",
    "Graph",
    "GraphvizNotFoundError",
    "Visit",
    "explain",
    "graph",
    "render",
    "to_dot",
]


class GraphvizNotFoundError(RuntimeError):
    """Graphviz's ``dot`` program is needed to draw a graph and is not installed."""


@dataclass
class Edge:
    """One input of a node: where it comes from and the gradient backward sent to it."""

    position: int
    shape: tuple[int, ...]
    kind: str  # "node" (made by another operation), "leaf" (requires grad) or "constant"
    label: str  # e.g. "#2 MulBackward0", "l1.weight", "constant 5.0"
    grad: np.ndarray | None  # None: no gradient goes this way


@dataclass
class Visit:
    """One node as backward reached it."""

    order: int  # 1 for the first node backward visits
    name: str  # the operation, named as torch names it (``MulBackward0``)
    seq: int  # when the forward pass made it (larger = later)
    shape: tuple[int, ...]  # its output's shape
    grad_output: np.ndarray  # the gradient it received
    inputs: list[Edge] = field(default_factory=list)


class Explanation(list):
    """The nodes of a graph in backward's visiting order (a list of :class:`Visit`)."""

    def __init__(self, visits: Iterable[Visit], dot: str) -> None:
        super().__init__(visits)
        self.dot = dot

    def names(self) -> list[str]:
        """The operations in visiting order, e.g. ``["MseLossBackward0", "MulBackward0", ...]``."""
        return [v.name for v in self]

    def text(self, values: int = 4) -> str:
        """The table :func:`explain` prints: each node, its inputs and their gradients."""
        lines = [
            f"backward visits {len(self)} nodes, the last one made first "
            "(the forward pass in reverse):"
        ]
        for v in self:
            lines.append("")
            lines.append(
                f"#{v.order:<3d}{v.name}  output {_shape(v.shape)}  "
                f"receives grad {_values(v.grad_output, values)}"
            )
            for e in v.inputs:
                src = {"node": "from", "leaf": "leaf", "constant": "    "}[e.kind]
                if e.grad is None:
                    sent = "sends no gradient"
                elif e.kind == "leaf":
                    sent = f"adds to {e.label}.grad {_values(e.grad, values)}"
                else:
                    sent = f"sends {_values(e.grad, values)}"
                lines.append(
                    f"      input {e.position} {_shape(e.shape):9s} {src} {e.label:22s} {sent}"
                )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"<Explanation of {len(self)} nodes: {', '.join(self.names())}>"

    def graph(self) -> Graph:
        """The same graph as a :class:`Graph` (DOT text, an image where Graphviz is installed)."""
        return Graph(self.dot)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        bundle = {"text/plain": self.text()}
        svg = Graph(self.dot)._repr_svg_()
        if svg is not None:
            bundle["image/svg+xml"] = svg
        return bundle


def _shape(shape: tuple[int, ...]) -> str:
    return str(tuple(int(s) for s in shape))


def _values(a: np.ndarray, n: int) -> str:
    """A short look at an array: its shape and its first ``n`` values."""
    a = np.asarray(a)
    flat = a.reshape(-1)
    head = ", ".join(f"{float(x):.4g}" for x in flat[:n])
    more = ", ..." if flat.size > n else ""
    if a.ndim == 0:
        return head
    return f"{_shape(a.shape)} [{head}{more}]"


# -- walking the graph -----------------------------------------------------------------------


def _reachable(loss: Tensor) -> tuple[list[Node], list[Tensor]]:
    """Every node reachable from ``loss`` (visiting order) and every tensor the graph touches."""
    nodes: dict[int, Node] = {}
    tensors: dict[int, Tensor] = {id(loss): loss}
    stack = [loss]
    while stack:
        t = stack.pop()
        node = t.grad_fn
        if node is None or id(node) in nodes:
            continue
        nodes[id(node)] = node
        for inp in node.inputs:
            tensors.setdefault(id(inp), inp)
            stack.append(inp)
    # backward runs the most recently made node first (tinymf.tensor.backward)
    order = sorted(nodes.values(), key=lambda n: n.seq, reverse=True)
    return order, list(tensors.values())


def _name_map(names) -> dict[int, str]:
    if names is None:
        return {}
    if hasattr(names, "named_parameters"):
        names = names.named_parameters()
    elif isinstance(names, Mapping):
        names = names.items()
    return {id(t): str(n) for n, t in names}


def _label_input(inp: Tensor, orders: dict[int, int], names: dict[int, str]) -> tuple[str, str]:
    if inp.grad_fn is not None and id(inp.grad_fn) in orders:
        return "node", f"#{orders[id(inp.grad_fn)]} {inp.grad_fn.name()}"
    if id(inp) in names:
        return ("leaf" if inp.requires_grad else "constant"), names[id(inp)]
    if inp.requires_grad:
        return "leaf", f"leaf {_shape(inp.shape)}"
    if inp.value.size == 1:
        return "constant", f"constant {inp.value.reshape(-1)[0].item():g}"
    return "constant", f"constant {_shape(inp.shape)}"


def explain(loss: Tensor, names=None, *, keep_grad: bool = False, gradient=None) -> Explanation:
    """List the graph behind ``loss`` in the order ``backward()`` visits it, with gradients.

    ``names`` labels leaves: a module (its ``named_parameters()``), a mapping name -> tensor or
    pairs. Runs ``backward(retain_graph=True)``, so the graph is still there afterwards; every
    ``.grad`` it touched is restored unless ``keep_grad=True``. Call it before the training
    loop's own ``loss.backward()``, which frees the graph.
    """
    if not isinstance(loss, Tensor) or loss.grad_fn is None:
        raise ValueError(
            "explain() needs a tensor made by operations on tensors that require grad "
            "(it has no grad_fn, so there is no graph to explain)"
        )
    nodes, tensors = _reachable(loss)
    labels = _name_map(names)
    saved = [(t, t.grad) for t in tensors if t.requires_grad]

    seen: list[tuple[Node, np.ndarray, tuple]] = []

    def observe(node: Node, grad, input_grads) -> None:
        kept = tuple(None if g is None else np.array(g, copy=True) for g in input_grads)
        seen.append((node, np.array(grad, copy=True), kept))

    backward_observers.append(observe)
    try:
        _backward(loss, gradient, retain_graph=True)
    except RuntimeError as exc:
        if "second time" in str(exc):
            raise RuntimeError(
                "explain() needs the graph, but backward() already freed it; call explain() "
                "before loss.backward(), or use loss.backward(retain_graph=True)"
            ) from None
        raise
    finally:
        backward_observers.remove(observe)
        if not keep_grad:
            for t, g in saved:
                t.grad = g

    orders = {id(node): k + 1 for k, (node, _, _) in enumerate(seen)}
    visits = []
    for k, (node, grad, input_grads) in enumerate(seen):
        edges = []
        for pos, (inp, g) in enumerate(zip(node.inputs, input_grads, strict=True)):
            kind, label = _label_input(inp, orders, labels)
            send = g if inp.requires_grad else None
            edges.append(Edge(pos, tuple(inp.shape), kind, label, send))
        visits.append(Visit(k + 1, node.name(), node.seq, tuple(node.shape), grad, edges))
    return Explanation(visits, _dot(nodes, labels))


# -- drawing it ------------------------------------------------------------------------------


def to_dot(loss: Tensor, names=None) -> str:
    """The graph behind ``loss`` as Graphviz DOT text (no backward is run, no .grad touched).

    Operations are boxes numbered in backward's visiting order; leaves that require grad are
    blue, constants grey. Edges point the way values flow forward; gradients flow back.
    """
    if not isinstance(loss, Tensor) or loss.grad_fn is None:
        raise ValueError("to_dot() needs a tensor with a grad_fn (a recorded graph)")
    nodes, _ = _reachable(loss)
    return _dot(nodes, _name_map(names))


def _quote(text: str) -> str:
    """A DOT string literal; a newline in ``text`` becomes DOT's centred line break."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped + '"'


def _dot(nodes: list[Node], names: dict[int, str]) -> str:
    orders = {id(n): k + 1 for k, n in enumerate(nodes)}
    others: dict[int, str] = {}  # tensors that are not made by a node: t1, t2, ... in order met
    lines = [
        "digraph backward {",
        '  graph [rankdir=TB, fontname="Helvetica", labelloc=t, '
        'label="values flow down; backward visits #1 first, then #2, ..."];',
        '  node [fontname="Helvetica", fontsize=11];',
    ]
    for node in nodes:
        nid = f"n{orders[id(node)]}"
        label = f"#{orders[id(node)]} {node.name()}\n{_shape(tuple(node.shape))}"
        lines.append(
            f'  {nid} [shape=box, style="rounded,filled", fillcolor="#fff2cc", '
            f"label={_quote(label)}];"
        )
        for inp in node.inputs:
            if inp.grad_fn is not None and id(inp.grad_fn) in orders:
                src = f"n{orders[id(inp.grad_fn)]}"
            else:
                if id(inp) not in others:
                    others[id(inp)] = src = f"t{len(others) + 1}"
                    kind, text = _label_input(inp, orders, names)
                    if kind == "leaf":
                        style = 'shape=ellipse, style=filled, fillcolor="#cfe2f3"'
                        if id(inp) in names:
                            text = f"{text}\n{_shape(tuple(inp.shape))}"
                    else:
                        style = 'shape=ellipse, style="dashed", fontcolor="#666666"'
                    lines.append(f"  {src} [{style}, label={_quote(text)}];")
                src = others[id(inp)]
            lines.append(f"  {src} -> n{orders[id(node)]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_program() -> str:
    found = shutil.which("dot")
    if found is None:
        raise GraphvizNotFoundError(
            "drawing the graph needs Graphviz's `dot` program, which is not on PATH; install "
            "Graphviz (e.g. `apt-get install graphviz` or `brew install graphviz`), or use "
            "to_dot() for the DOT text and paste it into any Graphviz viewer"
        )
    return found


class Graph:
    """DOT text that draws itself: ``render(path)``, ``svg()``, inline in a notebook."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        return f"<Graph: {self.source.count(' -> ')} edges; str() gives the DOT text>"

    def pipe(self, fmt: str) -> bytes:
        """The graph drawn by ``dot -T<fmt>`` (``svg``, ``png``, ``pdf``, ...)."""
        proc = subprocess.run(
            [_dot_program(), f"-T{fmt}"],
            input=self.source.encode(),
            capture_output=True,
            check=False,
            timeout=60,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"dot failed: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout

    def svg(self) -> str:
        return self.pipe("svg").decode()

    def render(self, path: str | Path, fmt: str | None = None) -> Path:
        """Draw into ``path``; the format comes from its suffix (``.png``, ``.svg``, ...)."""
        path = Path(path)
        fmt = fmt or path.suffix.lstrip(".").lower()
        if not fmt:
            raise ValueError(f"{path}: give the file a suffix such as .png or .svg, or fmt=")
        if fmt in ("dot", "gv"):
            path.write_text(self.source, encoding="utf-8")
        else:
            path.write_bytes(self.pipe(fmt))
        return path

    def _repr_svg_(self) -> str | None:
        # a notebook falls back to the text form when Graphviz is not installed
        try:
            return self.svg()
        except (GraphvizNotFoundError, RuntimeError, OSError, subprocess.SubprocessError):
            return None

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        bundle = {"text/plain": self.source}
        svg = self._repr_svg_()
        if svg is not None:
            bundle["image/svg+xml"] = svg
        return bundle


def graph(loss: Tensor, names=None) -> Graph:
    """The graph behind ``loss`` as a :class:`Graph` (shown inline by Jupyter)."""
    return Graph(to_dot(loss, names))


def render(loss: Tensor, path: str | Path, names=None, fmt: str | None = None) -> Path:
    """Draw the graph behind ``loss`` into an image file (needs Graphviz's ``dot``)."""
    return graph(loss, names).render(path, fmt)
