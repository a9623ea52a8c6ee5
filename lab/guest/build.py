"""The guest image: a Debian cloud kernel and a busybox initramfs carrying the Linux tape stack.

``ensure_image()`` returns a cached image or builds one:
- the current Debian cloud kernel image package is fetched with ``apt-get download`` and
  unpacked with ``dpkg-deb -x`` (no root tricks, nothing installed on the host);
- vmlinuz plus the modules ``st``, ``sg``, ``virtio_scsi`` and every module they depend on,
  in load order (read from each module's ``.modinfo``: the package has no modules.dep);
- a cpio "newc" initramfs: static busybox (minus the applets that would shadow the real
  tools), bash as /bin/sh, GNU tar, mt-st, stenc, sg3-utils, lsscsi, Bacula's btape with a bacula-sd.conf for
  /dev/nst0, sha256sum, each with the libraries ``ldd`` lists, and lab/guest/init.sh as /init.

The cache lives outside the repository ($XDG_CACHE_HOME/t10k-lab/guest, else
~/.cache/t10k-lab/guest), one directory per kernel version and builder hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .cpio import CpioWriter
from .errors import GuestError

HERE = Path(__file__).resolve().parent
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
#: An image of another kernel or builder is removed once unused this long (another checkout may use it).
STALE_AFTER_S = 24 * 3600
#: Modules the guest needs (virtio_pci finds the virtio-scsi controller); each loads after its dependencies.
WANTED_MODULES = ("virtio_pci", "virtio_scsi", "st", "sg")
#: Guest path -> host path of every real tool (busybox applets of the same name are left out).
TOOLS: dict[str, str] = {
    "/usr/bin/tar": "/usr/bin/tar",
    "/usr/bin/mt": "/usr/bin/mt-st",
    "/usr/bin/mt-st": "/usr/bin/mt-st",
    "/usr/bin/stenc": "/usr/bin/stenc",
    "/usr/bin/lsscsi": "/usr/bin/lsscsi",
    "/usr/bin/sha256sum": "/usr/bin/sha256sum",
    "/usr/sbin/btape": "/usr/sbin/btape",
    "/bin/bash": "/bin/bash",
    **{f"/usr/bin/{t}": f"/usr/bin/{t}" for t in (
        "sg_raw", "sg_requests", "sg_opcodes", "sg_inq", "sg_turs", "sg_vpd", "sg_modes", "sg_logs")},
}
BUSYBOX = "/bin/busybox"
#: Debian's static busybox runs its own applets before PATH from its shell (SH_STANDALONE), so its
#: tar and mt would shadow GNU tar and mt-st: scripts and the interactive shell run in bash, and
#: /bin/sh is bash too.
SHELL = "/bin/bash"
#: The Debian packages the builder and the runner need on the host.
HOST_PACKAGES = ("qemu-system-x86", "qemu-block-extra", "busybox-static", "mt-st", "stenc", "sg3-utils", "lsscsi",
                 "bacula-sd", "tar", "coreutils", "libiscsi-bin")
BACULA_SD_CONF = """\
Storage {
  Name = t10k-guest-sd
  WorkingDirectory = /var/bacula
  Pid Directory = /run
  Plugin Directory = /usr/lib/bacula
}
Director {
  Name = t10k-guest-dir
  Password = "lab"
}
Device {
  Name = T10000
  Media Type = T10000
  Archive Device = /dev/nst0
  Device Type = Tape
  AutomaticMount = yes
  AlwaysOpen = yes
  RemovableMedia = yes
  RandomAccess = no
}
Messages {
  Name = Standard
  console = all
}
"""


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path
    kernel_version: str
    directory: Path

    @property
    def manifest(self) -> dict[str, object]:
        return json.loads((self.directory / "manifest.json").read_text())  # type: ignore[no-any-return]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "t10k-lab" / "guest"


def builder_hash() -> str:
    """Changes whenever the builder or the guest's init changes, so a stale image is never reused."""
    h = hashlib.sha256()
    for name in ("build.py", "cpio.py", "init.sh"):
        h.update((HERE / name).read_bytes())
    return h.hexdigest()[:12]


def current_kernel_package(cache: Path | None = None) -> str:
    """The kernel image package the cloud metapackage depends on now (e.g. linux-image-6.1.0-56-cloud-amd64).

    apt-cache costs about a second of CPU, so the answer is kept beside the images until the
    package lists change (apt-get update).
    """
    lists = Path("/var/lib/apt/lists")
    stamp = max((e.stat().st_mtime_ns for e in os.scandir(lists) if "Packages" in e.name), default=0) \
        if lists.is_dir() else 0
    memo = (cache or cache_root()) / "kernel-package.json"
    try:
        known = json.loads(memo.read_text())
        if known["lists"] == stamp:
            return str(known["package"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    package = _resolve_kernel_package()
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"lists": stamp, "package": package}) + "\n")
    return package


def _resolve_kernel_package() -> str:
    out = _run(["apt-cache", "depends", KERNEL_METAPACKAGE], what="apt-cache (is this Debian? run apt-get update)")
    for line in out.splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
        if m:
            return m.group(1)
    raise GuestError(f"apt-cache names no kernel for {KERNEL_METAPACKAGE}; run apt-get update")


def ensure_image(cache: Path | None = None, *, log: object = None) -> GuestImage:
    """The cached image for the current kernel and this builder, built first if missing."""
    cache = cache or cache_root()
    package = current_kernel_package(cache)
    version = package.removeprefix("linux-image-")
    directory = cache / f"{version}-{builder_hash()}"
    image = GuestImage(directory / "vmlinuz", directory / "initrd.img", version, directory)
    if (directory / "manifest.json").exists():
        os.utime(directory)  # in use: not stale
        return image
    _say(log, f"building the guest image for {version} in {directory} (once)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=directory.parent))
    try:
        started = time.monotonic()
        manifest = _build(package, version, work, log)
        manifest["build_seconds"] = round(time.monotonic() - started, 1)
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(work / "deb", ignore_errors=True)
        try:
            work.rename(directory)
        except OSError:  # another build finished first: use it
            if not (directory / "manifest.json").exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for stale in directory.parent.iterdir():  # images of older kernels or builders, unused for a day
        if (stale != directory and re.fullmatch(r".+-[0-9a-f]{12}", stale.name)
                and time.time() - stale.stat().st_mtime > STALE_AFTER_S):
            shutil.rmtree(stale, ignore_errors=True)
    return image


def _build(package: str, version: str, work: Path, log: object) -> dict[str, object]:
    missing = [g for g, h in {**TOOLS, "busybox": BUSYBOX}.items() if not Path(h).exists()]
    if missing:
        raise GuestError(f"missing host tools {', '.join(missing)}: apt-get install --no-install-recommends "
                         + " ".join(HOST_PACKAGES))
    root = work / "deb"
    _run(["dpkg-deb", "-x", str(_kernel_deb(package, work.parent, log)), str(root)], what="dpkg-deb -x")
    shutil.copyfile(root / "boot" / f"vmlinuz-{version}", work / "vmlinuz")
    modules = _module_order(root / "lib" / "modules" / version)

    cpio = CpioWriter()
    for d in ("dev", "proc", "sys", "tmp", "root", "run", "var/bacula", "etc/t10k", "lib64"):
        cpio.directory(d)
    cpio.file("init", (HERE / "init.sh").read_bytes(), 0o755)
    for name, path in modules:
        cpio.file(f"lib/modules/{name}", path.read_bytes())
    cpio.file("etc/t10k/modules", "".join(f"{name}\n" for name, _ in modules).encode())
    cpio.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    cpio.file("etc/group", b"root:x:0:\ntape:x:26:\ndisk:x:6:\n")
    cpio.file("etc/bacula/bacula-sd.conf", BACULA_SD_CONF.encode())
    libraries: set[str] = set()
    for guest, host in sorted(TOOLS.items()):
        cpio.file(guest, Path(host).read_bytes(), 0o755)
        libraries |= _libraries(host)
    for lib in sorted(libraries):
        cpio.file(lib, Path(lib).read_bytes(), 0o755)
    cpio.file("bin/busybox", Path(BUSYBOX).read_bytes(), 0o755)
    applets = _run([BUSYBOX, "--list"], what="busybox --list").split()
    shadowed = {Path(g).name for g in TOOLS} | {"sh"}
    cpio.symlink("bin/sh", "bash")
    for applet in applets:
        if applet not in shadowed and applet != "busybox":
            cpio.symlink(f"bin/{applet}", "busybox")
    data = bytes(cpio)
    (work / "initrd.img").write_bytes(data)
    return {"kernel_package": package, "kernel_version": version, "modules": [n for n, _ in modules],
            "tools": sorted(TOOLS), "libraries": sorted(libraries), "busybox_applets_left_out": sorted(shadowed & set(applets)),
            "initrd_bytes": len(data)}


def _kernel_deb(package: str, cache: Path, log: object) -> Path:
    """The kernel package's .deb, downloaded once and kept (so a rebuild needs no network)."""
    debs = cache / "debs" / package
    found = sorted(debs.glob("*.deb"))
    if found:
        return found[-1]
    debs.mkdir(parents=True, exist_ok=True)
    _say(log, f"apt-get download {package}")
    _run(["apt-get", "download", package], cwd=debs, what=f"apt-get download {package} (needs the Debian mirror: "
         "build the image once with 't10k lab guest --build' where the network is reachable)")
    found = sorted(debs.glob("*.deb"))
    if len(found) != 1:
        raise GuestError(f"apt-get download {package} left {len(found)} .deb files in {debs}")
    return found[0]


def _module_order(moddir: Path) -> list[tuple[str, Path]]:
    """The wanted modules and their dependencies, each after what it needs: [(file name, path)]."""
    index = {p.name.split(".ko")[0].replace("-", "_"): p for p in moddir.rglob("*.ko*")}
    order: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen:
            return
        if name in chain:
            raise GuestError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        path = index.get(name)
        if path is None:
            raise GuestError(f"module {name} is not in {moddir} (is it built in? see modules.builtin)")
        if not path.name.endswith(".ko"):
            raise GuestError(f"{path.name} is compressed; busybox insmod needs plain .ko modules")
        m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", path.read_bytes())
        for dep in filter(None, (m.group(1).decode().split(",") if m else [])):
            visit(dep.replace("-", "_"), chain + (name,))
        seen.add(name)
        order.append((path.name, path))

    for wanted in WANTED_MODULES:
        visit(wanted, ())
    return order


def _libraries(binary: str) -> set[str]:
    out = _run(["ldd", binary], what=f"ldd {binary}")
    found = set()
    for line in out.splitlines():
        m = re.search(r"=>\s*(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if m:
            found.add(m.group(1))
    return found


def _run(argv: list[str], *, what: str, cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise GuestError(f"{argv[0]} not found: apt-get install --no-install-recommends "
                         + " ".join(HOST_PACKAGES)) from None
    except subprocess.TimeoutExpired:
        raise GuestError(f"{what} took more than 300 s") from None
    if result.returncode != 0:
        raise GuestError(f"{what} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return result.stdout


def _say(log: object, message: str) -> None:
    if callable(log):
        log(message)
