"""Errors raised by the update codec."""

from __future__ import annotations


class CodecError(Exception):
    """An update or an aggregate cannot be encoded or decoded as the configuration requires."""


class CodecConfigError(CodecError, ValueError):
    """A codec configuration is invalid; ``problems`` lists every violated rule."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid codec configuration: " + "; ".join(self.problems))
