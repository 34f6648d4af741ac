"""Speed and memory of `trace-pipe replay` against Dynamo's replay (ai-dynamo 1.4.2), same inputs,
one run each, child processes measured alike. See parity_replay.py for the details.

    .venv/bin/python bench/bench_replay.py [--skip-agentic]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from parity_replay import main  # noqa: E402

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "--bench", *sys.argv[1:]]
    sys.exit(main())
