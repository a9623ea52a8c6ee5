"""Guest-side shell snippets shared by the tests against tgt and against our drive."""

from __future__ import annotations

import hashlib

#: Files of known content: ``seq 1 N`` for each N (the host knows their checksums).
SEQ_FILES = {"tree/a/seq20000": 20000, "tree/a/b/seq100000": 100000, "tree/c/seq7": 7}

TAR_ROUND_TRIP = """
set -u
mkdir -p /tmp/src/tree/a/b /tmp/src/tree/c /tmp/dst
""" + "".join(f"seq 1 {n} > /tmp/src/{path}\n" for path, n in SEQ_FILES.items()) + """
dd if=/dev/urandom of=/tmp/src/tree/a/b/random.bin bs=64k count=40 2>/dev/null
(cd /tmp/src && find tree -type f | sort | xargs sha256sum) > /tmp/before
mt -f /dev/nst0 rewind
tar -cf /dev/nst0 -C /tmp/src tree; echo "TAR-CREATE $?"
mt -f /dev/nst0 rewind
tar -xf /dev/nst0 -C /tmp/dst; echo "TAR-EXTRACT $?"
echo BEFORE; cat /tmp/before
echo AFTER; (cd /tmp/dst && find tree -type f | sort | xargs sha256sum)
echo END
"""


def seq_sha256(n: int) -> str:
    return hashlib.sha256("".join(f"{i}\n" for i in range(1, n + 1)).encode()).hexdigest()


def checksums(output: str, section: str) -> dict[str, str]:
    """``sha256sum`` lines between a section header (BEFORE/AFTER) and the next one: {path: digest}."""
    lines = output.split(f"\n{section}\n", 1)[1].splitlines()
    out = {}
    for line in lines:
        if line in ("BEFORE", "AFTER", "END"):
            break
        digest, path = line.split()
        out[path] = digest
    return out
