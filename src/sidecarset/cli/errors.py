"""The CLI's one error type: a single line for the user, and an exit code."""

from __future__ import annotations


class CliError(Exception):
    """What was attempted and what to do next, on one line; exit code 1 (2 for usage)."""

    def __init__(self, message: str, *, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
