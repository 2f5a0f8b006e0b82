"""`python -m sidecarset` runs the CLI."""

from sidecarset.cli.main import main

main()
