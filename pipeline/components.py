"""Plays as Dynamo's loaders find them where a trace names none: the connected components of the
dependency graph, each named after its root (a request with no dependencies) that starts first,
ties to the smaller request id. One rule for the raw request-trace lowering (pipeline/raw_lowering.py)
and for headerless v1 rows lifted to the v2 graph (sim/agentic_graph.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def play_roots(deps: Sequence[Iterable[int]], is_root: Sequence[bool], key: Sequence) -> list[int]:
    """Per node, the index of the root its play is named after: among the roots (`is_root`) of its
    component (nodes linked by `deps`, either way), the one of least `key`; the node itself when
    its component has no root (a cycle, which the DAG check names)."""
    up = list(range(len(is_root)))

    def find(x: int) -> int:
        while up[x] != x:
            up[x] = up[up[x]]
            x = up[x]
        return x

    for i, ds in enumerate(deps):
        for j in ds:
            a, b = find(i), find(j)
            if a != b:
                up[a] = b
    best: dict[int, int] = {}
    for i, root in enumerate(is_root):
        if root:
            c = find(i)
            b = best.get(c)
            if b is None or key[i] < key[b]:
                best[c] = i
    return [best.get(find(i), i) for i in range(len(up))]
