"""Real clients in a guest: a QEMU (TCG) Linux with the st and sg drivers whose /dev/nst0 is a
drive's iSCSI LUN (``t10k lab guest``; docs/GUEST.md)."""

from .build import GuestImage, ensure_image
from .errors import GuestError
from .runner import GuestRun, Lun, run_script, run_shell

__all__ = ["GuestError", "GuestImage", "GuestRun", "Lun", "ensure_image", "run_script", "run_shell"]
