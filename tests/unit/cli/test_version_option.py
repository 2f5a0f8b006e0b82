"""`sidecarset --version` prints the installed package's version (from pyproject.toml)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version

from tests.unit.cli.conftest import Outcome


def test_version_prints_the_package_version_and_exits_zero(
    sidecarset: Callable[..., Outcome],
) -> None:
    outcome = sidecarset("--version")
    assert outcome == Outcome(0, f"sidecarset {version('sidecarset')}\n", "")
