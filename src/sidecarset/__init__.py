"""sidecarset: centrally managed sidecars for Kubernetes."""

__version__ = "0.1.0"
