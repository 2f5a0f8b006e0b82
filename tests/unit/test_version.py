"""The version is written once, in pyproject.toml; everything else reads the package metadata."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import yaml

import sidecarset

ROOT = Path(__file__).resolve().parents[1].parent
CHART = ROOT / "charts" / "sidecarset" / "Chart.yaml"


def test_the_charts_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load(CHART.read_text())
    assert chart["appVersion"] == version("sidecarset"), (
        f"{CHART.relative_to(ROOT)} appVersion {chart['appVersion']!r} differs from the package "
        f"version {version('sidecarset')!r} in pyproject.toml: bump both together"
    )


def test_the_package_reports_its_metadata_version() -> None:
    assert sidecarset.__version__ == version("sidecarset")
    assert version("sidecarset").count(".") >= 2  # a real version, not a placeholder
