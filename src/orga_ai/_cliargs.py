"""Argument types the ``orga-ai`` subcommands share (argparse ``type=``): one grammar each, one message each."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["header", "seconds"]


def header(text: str) -> tuple[str, str]:
    """``'Name: value'``, as ``--header`` takes it (no line break: it would end the header)."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c in text for c in "\r\n"):
        raise argparse.ArgumentTypeError("a header is 'Name: value'")
    return name.strip(), value.strip()


def seconds(maximum: float) -> Callable[[str], float]:
    """A number of seconds, more than 0 and at most ``maximum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
        if not 0 < value <= maximum:
            raise argparse.ArgumentTypeError(f"expected seconds between 0 and {maximum:g}")
        return value

    return parse
