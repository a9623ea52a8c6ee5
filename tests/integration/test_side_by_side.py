"""Labs side by side: free addresses are found, and a clash names the address and who holds it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from drive_daemon.errors import BindError as DriveBindError
from drive_daemon.service import DriveHost, DriveHostConfig
from lab.addresses import DEFAULT_NET, AddressError, LabNet, allocate, clashes, ensure_free
from lab.cluster import Lab, LabPlan
from netcheck import find_holders
from protocol.constants import TOKEN_MGMT_PORT
from protocol.manufacturing import make_drives
from token_daemon.errors import BindError as TokenBindError
from token_daemon.service import TokenConfig, TokenService

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parents[2]
T10K = [sys.executable, "-m", "lab.cli"]


def test_a_held_address_names_this_process() -> None:
    net = allocate(1, 0)
    with socket.socket() as held:
        held.bind((net.token_ip(0), TOKEN_MGMT_PORT))
        held.listen()
        [holder] = find_holders(net.token_ip(0), TOKEN_MGMT_PORT, "tcp")
        assert holder.pid == os.getpid() and "this process" in holder.describe()
        with pytest.raises(AddressError, match=rf"{net.token_ip(0)}:{TOKEN_MGMT_PORT}/tcp held by this process"):
            ensure_free(net, 1, 0)
    assert clashes(net, 1, 0) == []


async def test_a_token_and_a_drive_name_the_address_they_cannot_bind(tmp_path: Path) -> None:
    net = allocate(1, 1)
    with socket.socket() as held:
        held.bind((net.token_ip(0), TOKEN_MGMT_PORT))
        held.listen()
        token = TokenService(TokenConfig(net.token_ip(0), tmp_path / "tok", os.urandom(32), drive_lan_port=net.lan_port))
        with pytest.raises(TokenBindError, match=rf"{net.token_ip(0)}:{TOKEN_MGMT_PORT}/tcp.*this process {os.getpid()}"):
            await token.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind((net.drive_ip(0), 7012))
        host = DriveHost(DriveHostConfig(tmp_path / "drives", lan_port=net.lan_port), [(make_drives(1)[0], net.drive_ip(0))])
        with pytest.raises(DriveBindError, match=rf"LAN socket to {net.drive_ip(0)}:7012/udp: address already in use, held .* by this process"):
            await host.start()
    async with TokenService(TokenConfig(net.token_ip(0), tmp_path / "tok", os.urandom(32))):
        pass  # the failed start released the address and the bay


async def test_two_labs_run_side_by_side_without_hearing_each_other(tmp_path: Path) -> None:
    async with Lab(tmp_path / "a", LabPlan(drive_count=2)) as a, Lab(tmp_path / "b", LabPlan(drive_count=2)) as b:
        assert a.net.network != b.net.network and a.net.lan_port != b.net.lan_port
        await a.arm()
        statuses = await b.vop_all()  # b's drives heard none of a's broadcasts
        assert {s.led.name for s in statuses.values()} == {"GREEN"}
        assert b.drives.counters.datagrams_in == 0


def test_a_given_net_in_use_names_the_holder(tmp_path: Path) -> None:
    net = allocate(1, 4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind((net.drive_ip(2), 7012))
        result = subprocess.run([*T10K, "lab", "scenario", "reset", "--net", str(net)], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{net.drive_ip(2)}:7012/udp held by process {os.getpid()}" in result.stderr, result.stderr
    bad = subprocess.run([*T10K, "lab", "demo", "--net", "10.0.0.0/8"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "loopback /24" in bad.stderr


def test_lab_net_spelling() -> None:
    assert LabNet.parse("127.0.5.0/24:7110") == LabNet(LabNet.parse("127.0.5.0/24").network, 7110)
    assert str(DEFAULT_NET) == "127.0.0.0/24:7010" and DEFAULT_NET.drive_ip(0) == "127.0.0.101"
    for bad in ("127.0.5.0/16", "10.0.0.0/24", "127.0.5.7/24", "127.0.5.0/24:0", "127.0.5.0/24:70000"):
        with pytest.raises(AddressError):
            LabNet.parse(bad)


def _default_lab(workdir: Path) -> subprocess.Popen[str]:
    """A lab armed on 127.0.0.0/24 and LAN port 7010 (as the README's daemons run), until its stdin closes."""
    code = (
        "import asyncio, sys, pathlib\n"
        "from lab.addresses import DEFAULT_NET\n"
        "from lab.cluster import Lab, LabPlan\n"
        "async def main():\n"
        f"    async with Lab(pathlib.Path({str(workdir)!r}), LabPlan(net=DEFAULT_NET)) as lab:\n"
        "        await lab.arm()\n"
        "        print('armed', flush=True)\n"
        "        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)\n"
        "asyncio.run(main())\n"
    )
    lab = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True)
    assert lab.stdout is not None and lab.stdout.readline().strip() == "armed"
    return lab


def test_the_demo_and_a_scenario_run_beside_a_lab_on_the_default_addresses(tmp_path: Path) -> None:
    """The demo, a scenario and the walkthrough while a lab holds the default addresses (this test starts one
    unless something, e.g. the README's daemons, already holds them)."""
    default = _default_lab(tmp_path / "default") if not clashes(DEFAULT_NET, 2, 8) else None
    try:
        assert clashes(DEFAULT_NET, 2, 8), "a lab holds the default addresses"
        demo = subprocess.run([*T10K, "lab", "demo", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert demo.returncode == 0, demo.stderr
        report = json.loads(demo.stdout)
        assert report["ok"] is True and report["net"] != str(DEFAULT_NET)
        scenario = subprocess.run([*T10K, "lab", "scenario", "scenario-1", "--json"], cwd=ROOT, capture_output=True,
                                  text=True, timeout=120)
        assert scenario.returncode == 0, scenario.stderr
        records = json.loads(scenario.stdout)["records"]
        assert any("0000610A" in r["text"] for r in records if r["phase"] == "symptom")
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        walk = subprocess.run(["bash", str(ROOT / "docs" / "walkthrough.sh"), str(tmp_path / "wt")], env=env,
                              capture_output=True, text=True, timeout=120)
        assert walk.returncode == 0 and '"led": "RED"' in walk.stdout, walk.stdout[-2000:] + walk.stderr[-2000:]
        again = subprocess.run([*T10K, "lab", "demo", "--net", str(DEFAULT_NET)], cwd=ROOT, capture_output=True,
                               text=True, timeout=60)
        holder = f"held by process {default.pid} (" if default is not None else "held by "
        assert again.returncode == 1 and holder in again.stderr and "Traceback" not in again.stderr, again.stderr
        assert default is None or default.poll() is None  # the lab on the default addresses was not disturbed
    finally:
        if default is not None:
            assert default.stdin is not None
            default.stdin.write("\n")
            default.stdin.close()
            default.wait(20)


def test_lab_up_names_the_holder_of_a_site_address(tmp_path: Path) -> None:
    from lab.addresses import free_lan_port
    from lab.netlab import NetLabError, NetworkLab
    from lab.topology import parse_topology

    topology = parse_topology({"name": "clash", "site": [
        {"name": "east", "drives": 1, "tokens": ["east-a"], "write_key": "K1"}]})
    with socket.socket() as held:
        held.bind(("127.18.1.21", TOKEN_MGMT_PORT))
        held.listen()
        lab = NetworkLab(topology, tmp_path / "state", netns=False, lan_port=free_lan_port())
        with pytest.raises(NetLabError, match=rf"site east's addresses are in use: 127\.18\.1\.21:{TOKEN_MGMT_PORT}/tcp "
                                              rf"held by this process {os.getpid()}"):
            lab.up()
    assert lab.daemons == [] and not (tmp_path / "state").exists()


def test_the_drive_tests_run_beside_a_lab_on_the_default_addresses(tmp_path: Path) -> None:
    """The VOP-loading and iSCSI tests (a lab, a drive process, our portal, libiscsi and tgt) while a lab holds
    127.0.0.0/24 and LAN port 7010, 127.0.0.101:3260 included: their addresses are found free."""
    default = _default_lab(tmp_path / "default") if not clashes(DEFAULT_NET, 2, 8) else None
    try:
        assert clashes(DEFAULT_NET, 2, 8), "a lab holds the default addresses"
        modules = ["test_vop_loading.py", "test_drive_real_clients.py", "test_iscsi_real_clients.py"]
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 *(f"tests/integration/{m}" for m in modules)], cwd=ROOT, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert " passed" in result.stdout and "skipped" not in result.stdout and "error" not in result.stdout
        assert default is None or default.poll() is None  # the lab on the default addresses was not disturbed
    finally:
        if default is not None:
            assert default.stdin is not None
            default.stdin.write("\n")
            default.stdin.close()
            default.wait(20)
