"""Which nodes of a dependency graph sit on or behind a cycle: one rule for the converter's
graph, the Mooncake v2 reader and the replay's DAG, which word their errors each their own way."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def blocked(indegree: list[int], children: Sequence[Iterable[int]]) -> list[int]:
    """Kahn's algorithm: the nodes whose dependencies never all complete (empty when the graph is
    acyclic), ascending. `indegree[i]` is node i's number of dependencies, `children[i]` the nodes
    that depend on it (one entry per dependency); `indegree` is consumed."""
    stack = [i for i, n in enumerate(indegree) if n == 0]
    while stack:
        i = stack.pop()
        for j in children[i]:
            indegree[j] -= 1
            if indegree[j] == 0:
                stack.append(j)
    return [i for i, n in enumerate(indegree) if n > 0]
