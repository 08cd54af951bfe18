"""A workflow's graph, laid out for server-side SVG (no JavaScript): one column per depth, arrows between.

A step's column is one more than the deepest step it waits for; within a column steps
keep the order they were added in. Edges are curves from the right side of the step
waited for to the left side of the one that waits. A workflow of more than
:data:`MAX_DRAWN` steps is not drawn (the page lists its steps instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django_bourbon_jobs.workflow_graph import StepView

MAX_DRAWN = 200
NODE_WIDTH = 150
NODE_HEIGHT = 40
COLUMN_GAP = 60
ROW_GAP = 16
MARGIN = 8
LABEL_CHARS = 20


@dataclass(frozen=True)
class Node:
    step: StepView
    x: int
    y: int
    label: str
    url: str

    @property
    def text_x(self) -> int:
        return self.x + 10

    @property
    def name_y(self) -> int:
        return self.y + 17

    @property
    def status_y(self) -> int:
        return self.y + 32


@dataclass(frozen=True)
class Edge:
    path: str
    title: str


@dataclass(frozen=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def columns(steps: Sequence[StepView]) -> dict[str, int]:
    """Each step's depth: 0 if it waits for nothing, else one more than its deepest dependency.

    ``steps`` come in the order added, and a step can only wait for steps that exist, but not
    necessarily earlier ones; so this repeats until nothing moves (at most one pass per depth).
    """
    depth = {step.name: 0 for step in steps}
    changed = True
    while changed:
        changed = False
        for step in steps:
            deepest = max((depth[after] + 1 for after in step.after if after in depth), default=0)
            if deepest != depth[step.name]:
                depth[step.name], changed = deepest, True
    return depth


def layout(steps: Sequence[StepView], url_of: dict[str, str]) -> Graph | None:
    """Where each step and arrow goes; ``None`` when there are more steps than :data:`MAX_DRAWN`."""
    if len(steps) > MAX_DRAWN or not steps:
        return None
    depth = columns(steps)
    rows: dict[int, int] = {}
    nodes: dict[str, Node] = {}
    for step in steps:
        column = depth[step.name]
        row = rows[column] = rows.get(column, -1) + 1
        x = MARGIN + column * (NODE_WIDTH + COLUMN_GAP)
        y = MARGIN + row * (NODE_HEIGHT + ROW_GAP)
        nodes[step.name] = Node(step, x, y, _label(step.name), url_of.get(step.name, ""))
    edges = [
        _edge(nodes[after], nodes[step.name]) for step in steps for after in step.after if after in nodes
    ]
    width = MARGIN * 2 + (max(depth.values()) + 1) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP
    height = MARGIN * 2 + max(rows.values(), default=0) * (NODE_HEIGHT + ROW_GAP) + NODE_HEIGHT
    return Graph(list(nodes.values()), edges, width, height)


def _label(name: str) -> str:
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "…"


def _edge(start: Node, end: Node) -> Edge:
    x1, y1 = start.x + NODE_WIDTH, start.y + NODE_HEIGHT // 2
    x2, y2 = end.x, end.y + NODE_HEIGHT // 2
    bend = (x2 - x1) // 2
    path = f"M {x1} {y1} C {x1 + bend} {y1}, {x2 - bend} {y2}, {x2} {y2}"
    return Edge(path, f"{end.step.name} waits for {start.step.name}")
