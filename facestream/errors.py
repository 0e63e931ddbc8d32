"""The one base of facestream's refusals: an error code that stays the same (`image.truncated`,
`broker.full`: what clients branch on) and a message for a person."""

from __future__ import annotations


class CodedError(Exception):
    """An error with facestream's stable `code` and a `message` for a person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
