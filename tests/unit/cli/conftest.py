"""Run the real `sidecarset` entry point in-process: exit code, stdout and stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NamedTuple

import pytest

from sidecarset.cli import main


class Outcome(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def sidecarset(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Outcome]:
    """`sidecarset(*args)` runs `main.main()` as the installed command does (its error
    handling included, which typer's CliRunner bypasses)."""

    def run(*args: str) -> Outcome:
        monkeypatch.setattr(sys, "argv", ["sidecarset", *args])
        code = 0
        try:
            main.main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run
