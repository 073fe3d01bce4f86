"""Text of messages to the user."""
from __future__ import annotations


def one_line(message: object, limit: int | None = None) -> str:
    """``message`` (text or an exception) on one line, whitespace collapsed; cut to ``limit``
    characters when given; an exception without text is named by its type."""
    text = " ".join(str(message).split())
    if limit is not None:
        text = text[:limit]
    if not text and isinstance(message, BaseException):
        return type(message).__name__
    return text
