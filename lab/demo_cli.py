"""``t10k lab demo``: the main job."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from protocol.cli_options import add_capture, add_json, add_mqtt

from .addresses import AddressError, LabNet, allocate


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    lab = sub.add_parser("lab", help="labs that run every part together")
    lsub = lab.add_subparsers(dest="lab_command", required=True)
    demo = lsub.add_parser("demo", help="enrol and arm eight drives from two tokens on loopback, then show "
                                        "an outdated token refused")
    add_json(demo, "print the report as JSON")
    demo.add_argument("--keep", type=Path, help="keep the lab's files (KMS store, token and drive state) here")
    add_capture(demo, "write every datagram and TCP frame to this pcap")
    _net_option(demo)
    _console_option(demo, "with --keep: then serve the KMS console on the kept store until Ctrl-C")
    demo.set_defaults(func=_demo)

    addresses = lsub.add_parser("addresses", help="find a free 127.x.y.0/24 and drive-LAN port for a lab beside "
                                                  "others (what --net takes)")
    addresses.add_argument("--tokens", type=int, default=2, help="tokens the lab will run (at .21, .22, ...)")
    addresses.add_argument("--drives", type=int, default=8, help="drives the lab will run (from .101)")
    addresses.add_argument("--shell", action="store_true", help="print NET=127.x.y LAN_PORT=N for a shell's eval")
    add_json(addresses)
    addresses.set_defaults(func=_addresses)

    up = lsub.add_parser("up", help="bring a topology up as separate processes, enrol and arm every site")
    up.add_argument("topology", type=Path, help="a TOML topology, e.g. lab/topologies/company-xyz.toml")
    up.add_argument("--state", type=Path, help="a new directory for the KMS store, secrets, daemon state and logs "
                                               "(default: a new one under the system's temporary directory)")
    up.add_argument("--mode", choices=["auto", "netns", "loopback"], default="auto",
                    help="netns: a namespace per token bay and per drive library on a bridge (root); "
                         "loopback: 127.18.*.* addresses; auto: netns when root")
    up.add_argument("--once", action="store_true", help="arm, print the status, tear down and exit")
    _console_option(up, "also serve the KMS console on the lab's store (operator logins are turned on)")
    add_mqtt(up, "every daemon publishes its state and alerts here, each site under its name; the console "
                 "draws the library live from it", site=False)
    add_json(up)
    up.set_defaults(func=_up)

    from .captures import SCENARIOS

    scenario = lsub.add_parser("scenario", help="run one of the seed's scenarios on loopback, symptoms checked "
                                                "(docs/SCENARIOS.md)")
    scenario.add_argument("name", choices=sorted(SCENARIOS))
    add_capture(scenario, "also write its traffic to this pcap")
    add_json(scenario)
    _net_option(scenario)
    scenario.set_defaults(func=_scenario)

    from .guest import cli as guest_cli

    guest_cli.register(lsub)

    down = lsub.add_parser("down", help="remove the namespaces and bridge a crashed 'lab up' left behind")
    down.add_argument("topology", type=Path)
    add_json(down)
    down.set_defaults(func=_down)


def _console_option(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--console", nargs="?", const="127.0.0.1:8443", metavar="IP:PORT",
                   help=f"{help}; default 127.0.0.1:8443 (port 0: a free one)")


CONSOLE_LOGIN = ("log in as KmsAdm with the default password kmsadm (changed at first login); the store now has "
                 "operator logins, so its CLI commands need 't10k kms login' too")


def _net_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", type=_lab_net, metavar="127.X.Y.0/24[:PORT]",
                   help="the lab's addresses (tokens .21+, drives .101+) and drive-LAN UDP port (default 7010); "
                        "default: free ones are found, so it runs beside another lab")


def _lab_net(text: str) -> LabNet:
    try:
        return LabNet.parse(text)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _addresses(args: argparse.Namespace) -> int:
    if not (0 <= args.tokens <= 200 and 0 <= args.drives <= 150):
        raise ValueError("--tokens must be 0..200 and --drives 0..150")
    net = allocate(args.tokens, args.drives)
    if args.json:
        print(json.dumps({"net": str(net), "prefix": net.prefix, "lan_port": net.lan_port, "broadcast": net.broadcast,
                          "tokens": [net.token_ip(i) for i in range(args.tokens)],
                          "drives": [net.drive_ip(i) for i in range(args.drives)]}, indent=2))
    elif args.shell:
        print(f"NET={net.prefix} LAN_PORT={net.lan_port}")
    else:
        print(net)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .cluster import LabTimeout  # the daemons load only for the commands that run them
    from .demo import render_step, run_demo

    if args.console and not args.keep:
        raise ValueError("--console serves the demo's store: give --keep DIR too")
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="t10k-demo-"))
    if args.keep and any(args.keep.iterdir() if args.keep.exists() else []):
        raise ValueError(f"--keep {args.keep} must be a new or empty directory")
    started = time.monotonic()
    progress = None if args.json else (lambda step: print(render_step(step), flush=True))
    on_start = None if args.json else (lambda lab: print(
        f"lab on {lab.net.network} (tokens {', '.join(lab.token_ips.values())}; drives {lab.net.drive_ip(0)}-"
        f"{lab.net.drive_ip(len(lab.drive_ips) - 1)}), drive LAN {lab.net.broadcast}:{lab.net.lan_port}", flush=True))
    from protocol.pcap import CaptureWriter

    capture = CaptureWriter.optional(args.capture)
    try:
        report = asyncio.run(run_demo(workdir, net=args.net, progress=progress, tap=capture, on_start=on_start))
    except LabTimeout as exc:
        print(f"t10k: demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if capture is not None:
            capture.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps(report.to_json() | {"seconds": round(elapsed, 2)}, indent=2))
    else:
        verdict = "every drive refused the outdated token" if report.ok else "NOT every drive refused the outdated token"
        print(f"\ndemo finished in {elapsed:.1f} s: {verdict}.")
        if capture is not None:
            print(f"{capture.packets} packets captured to {args.capture} (t10k pcap decode {args.capture})")
    if args.console:
        _serve_kept(workdir / "kms", args.console, as_json=args.json)
    return 0 if report.ok else 1


def _serve_kept(store_dir: Path, listen: str, *, as_json: bool) -> None:
    """The console on a kept demo's store (its daemons are gone: no live view), until Ctrl-C."""
    from kms_client import operators
    from kms_client.store import KmsStore
    from kms_console.cli import serve

    store = KmsStore.open(store_dir)
    try:
        if not operators.roles_enabled(store):
            operators.enable_roles(store)
    finally:
        store.close()
    if not as_json:
        print(f"console: {CONSOLE_LOGIN}", flush=True)
    serve(store_dir, listen, as_json=as_json)


def _up(args: argparse.Namespace) -> int:
    import signal as _signal

    from .addresses import free_lan_port
    from .netlab import NetLabError, NetworkLab, can_use_netns
    from .topology import load_topology

    from protocol.constants import DRIVE_LAN_PORT

    topology = load_topology(args.topology)
    netns = can_use_netns() if args.mode == "auto" else args.mode == "netns"
    if netns and not can_use_netns():
        raise NetLabError("network namespaces need root and iproute2; use --mode loopback")
    state = args.state or Path(tempfile.mkdtemp(prefix=f"t10k-{topology.name}-"))
    out = sys.stderr if args.json else sys.stdout  # progress; with --json, stdout holds only the JSON

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:5.1f} s] {text}", file=out, flush=True)

    started = time.monotonic()
    lan_port = DRIVE_LAN_PORT if netns else free_lan_port()  # loopback: one drive LAN per lab on this machine
    mode = "netns" if netns else "loopback"
    say(f"{topology.name}: {len(topology.sites)} site(s) in {mode} mode, state in {state}, drive LAN port {lan_port}")
    lab = NetworkLab(topology, state, netns=netns, lan_port=lan_port, progress=say, mqtt=args.mqtt)
    lab.up()
    try:
        say("every daemon serving; enrolling and arming every site")
        asyncio.run(lab.arm())
        rows = asyncio.run(lab.status())
        where = _lab_files(state, topology, netns)
        if args.console:
            where["console"] = lab.start_console(args.console)
            say(f"KMS console at {where['console']}: {CONSOLE_LOGIN}")
        if args.json:
            print(json.dumps({"topology": topology.name, "mode": mode, "seconds": round(time.monotonic() - started, 2),
                              "lan_port": lan_port, **where, "drives": rows}, indent=2), flush=True)
        else:
            print(f"{topology.name}: {len(topology.sites)} site(s) up in {mode} mode, "
                  f"armed in {time.monotonic() - started:.1f} s")
            for r in rows:
                print(f"  {r['site']:<14} {r['drive']:<18} {r['ip']:<15} {r['led']:<6} write key {r['write_key']:<4}"
                      f" {r['keys']} key(s)  OKT {r['okt_time']}")
            _print_files(where, topology, rows, netns)
            if "console" in where:
                print(f"console     {where['console']}   ({CONSOLE_LOGIN})")
        if not args.once:
            print("running; Ctrl-C (or SIGTERM) tears it down (the state directory stays)", file=out, flush=True)
            stop = asyncio.Event()

            async def wait() -> None:
                loop = asyncio.get_running_loop()
                for sig in (_signal.SIGINT, _signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await stop.wait()
            asyncio.run(wait())
    finally:
        lab.down()
    return 0


def _lab_files(state: Path, topology: Any, netns: bool) -> dict[str, Any]:
    """Where 'lab up' keeps what it made: the KMS store, token secrets, daemon state and logs."""
    return {
        "state": str(state),
        "kms_store": str(state / "kms"),
        "secrets": {t: str(state / "secrets" / t) for site in topology.sites for t in site.tokens},
        "token_ips": {t: ip for site in topology.sites for t, ip in zip(site.tokens, site.token_ips(netns), strict=True)},
        "token_state": str(state / "tokens"),
        "drive_state": str(state / "drives"),
        "manufacturing": {site.name: str(state / f"{site.name}-cd.json") for site in topology.sites},
        "logs": str(state / "logs"),
    }


def _print_files(where: dict[str, Any], topology: Any, rows: list[dict[str, Any]], netns: bool) -> None:
    token, ip = next(iter(where["token_ips"].items()))
    print(f"""
KMS store   {where['kms_store']}   (no operator roles: no login needed)
              t10k kms list --store {where['kms_store']}
              t10k kms token-status --store {where['kms_store']} --token {token}
secrets     {where['state']}/secrets/TOKEN, one per token (64 hex digits, mode 0600)
              t10k token status {ip} --secret-file {where['secrets'][token]}
state       tokens in {where['token_state']}/TOKEN, drives in {where['drive_state']}/SITE, manufacturing files
            {where['state']}/SITE-cd.json
drives      t10k vop status {rows[0]['ip'] if rows else 'IP'}""" + (
        "   (in netns mode, from the root namespace: the KMS has an address on every site's subnet)" if netns else "")
        + f"""
logs        {where['logs']}/NAME.log, one per daemon""")


def _down(args: argparse.Namespace) -> int:
    from .netlab import NetworkLab
    from .topology import load_topology

    NetworkLab(load_topology(args.topology), Path("/nonexistent"), netns=True).network_down()
    print(json.dumps({"topology": str(args.topology), "removed": True}) if args.json
          else "namespaces and bridge removed")
    return 0


def _scenario(args: argparse.Namespace) -> int:
    from protocol.pcap import CaptureWriter

    from .captures import SCENARIOS
    from .cluster import LabTimeout
    from .narration import Said

    scenario = SCENARIOS[args.name]
    title = (scenario.__doc__ or "").strip().splitlines()[0]
    started = time.monotonic()
    said: list[Said] = []

    def say(phase: str, text: str) -> None:
        said.append(Said(phase, text, time.monotonic() - started))
        if not args.json:
            print(said[-1].render(), flush=True)

    if not args.json:
        print(f"{args.name}: {title}", flush=True)
    failure = None
    with tempfile.TemporaryDirectory(prefix=f"t10k-{args.name}-") as work:
        capture = CaptureWriter.optional(args.capture)
        try:
            asyncio.run(scenario(Path(work) / "lab", capture, net=args.net, say=say))
        except (AssertionError, LabTimeout) as exc:
            failure = str(exc) or type(exc).__name__
        finally:
            if capture is not None:
                capture.close()
    elapsed = time.monotonic() - started
    symptoms = sum(1 for s in said if s.phase == "symptom")
    steps = sum(1 for s in said if s.phase == "recovery")
    if args.json:
        print(json.dumps({"scenario": args.name, "title": title, "ok": failure is None, "failure": failure,
                          "records": [s.to_json() for s in said], "seconds": round(elapsed, 2),
                          "capture": str(args.capture) if args.capture else None}, indent=2))
    elif failure is not None:
        print(f"t10k: scenario {args.name} failed: {failure}", file=sys.stderr)
    else:
        print(f"done in {elapsed:.1f} s: every symptom checked as it appeared ({symptoms}), {steps} recovery step(s)"
              + (f"; traffic in {args.capture} (t10k pcap decode {args.capture})" if args.capture else ""))
    return 0 if failure is None else 1
