"""docs/api-reference.md is generated from the model and must not go stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_api_reference_matches_the_model() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_api_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
