"""The host side's sizes, in a module that imports nothing (``t10k`` builds its parser from them)."""

from __future__ import annotations

#: The largest block the host writes or reads: the T10000's 2 MiB (READ(6)/WRITE(6) carry up to 16 MiB - 1).
MAX_TRANSFER = 2 * 1024 * 1024
#: The block size ``t10k host backup`` writes by default.
DEFAULT_BLOCK_SIZE = 256 * 1024
