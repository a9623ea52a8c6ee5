"""The pool sizes a bench is asked for on its command line (``--drives 100,1000,10000``)."""

from __future__ import annotations

import argparse


def pool_sizes(text: str) -> list[int]:
    """An argparse type: positive pool sizes separated by commas, the first being the baseline."""
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"pool sizes separated by commas (e.g. 100,1000), not {text!r}") from None
    if min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"pool sizes are at least 1 drive, not {text!r}")
    return sizes
