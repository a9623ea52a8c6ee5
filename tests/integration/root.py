"""The one skip the suite allows: tests that need root, for a developer who is not root.

CI runs as root with CI=true; there the mark never skips, so a CI machine that lost root (or
iproute2) fails those tests with the reason instead of passing with them skipped.
"""

from __future__ import annotations

import os

import pytest

from lab.netlab import can_use_netns

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

needs_root = pytest.mark.skipif(
    not can_use_netns() and not IN_CI,
    reason="needs root and iproute2 (network namespaces); CI runs as root and fails here instead",
)
