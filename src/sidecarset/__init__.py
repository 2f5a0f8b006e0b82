"""sidecarset: centrally managed sidecars for Kubernetes."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """`sidecarset.__version__`: the installed package's version, read from its metadata when
    asked for (pyproject.toml is its only source; importing the package stays cheap)."""
    if name == "__version__":
        from importlib.metadata import version

        return version("sidecarset")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
