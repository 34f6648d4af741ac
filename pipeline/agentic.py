"""The agentic Mooncake lowerings' public names in one import, for callers that use several
(tests, bench). Code in the package imports the module named after the concept instead:
request_graph (the dependency graph), tool_gaps (tool time in the gaps), plain_rows, agentic_v1,
agentic_v2, ids_text and mooncake_edges (edges read back from Mooncake rows)."""

from .agentic_v1 import dependency_edges, derive, derive_lazy, write_v1
from .agentic_v2 import derive_v2, derive_v2_lazy, private_block_id, v2_header, v2_ids, v2_row_json, write_v2
from .plain_rows import plain_rows
from .request_graph import RULES, Derived, Edge, check_block_size, sort_key

__all__ = ["RULES", "Derived", "Edge", "check_block_size", "dependency_edges", "derive", "derive_lazy",
           "derive_v2", "derive_v2_lazy", "plain_rows", "private_block_id", "sort_key", "v2_header", "v2_ids",
           "v2_row_json", "write_v1", "write_v2"]
