"""Parity with Dynamo's replay (ai-dynamo 1.4.2) on the shared fixtures; slow, needs the oracle venv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import oracle_cases  # noqa: E402
from parity_replay import CONV  # noqa: E402


@pytest.mark.parity
@pytest.mark.slow
def test_parity_with_dynamo_1_4_2():
    oracle_cases.oracle_or_skip()
    if not CONV.exists():
        pytest.skip(f"fixture missing: {CONV}")
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "parity_replay.py")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "PARITY OK" in res.stdout
