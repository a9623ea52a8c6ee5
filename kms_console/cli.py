"""``t10k kms serve``: the console over HTTPS, from a KMS store."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from kms_client.console_cert import console_cert_paths, make_console_cert
from protocol.cli_options import add_json, add_mqtt

from kms_client.storefiles import DBKEY_ENV, DbKeySource

from .errors import ConsoleError

DEFAULT_LISTEN = "127.0.0.1:8443"


def register(ksub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = ksub.add_parser("serve", help="serve the KMS console (the seed's HTTPS GUI) from a store")
    p.add_argument("--store", help="KMS store directory (default $T10K_KMS_STORE or ./kms-store)")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="IP:PORT",
                   help=f"where to serve HTTPS (default {DEFAULT_LISTEN})")
    p.add_argument("--cert", type=Path, help="a PEM certificate to serve (default: the one 'kms init' made in the store)")
    p.add_argument("--key", type=Path, help="the PEM private key of --cert")
    p.add_argument("--dbkey-file", type=Path, help=f"the file holding the database key; default: the file named at "
                   f"init, else ${DBKEY_ENV}, else STORE/dbkey (the console cannot ask for it at a prompt)")
    add_mqtt(p, "draw the library live from this broker (the daemons' --mqtt)", site=False)
    add_json(p, "print one JSON line when serving (url, certificate), for scripts")
    p.set_defaults(func=_serve)


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: a free port (printed)
        raise ConsoleError(f"--listen {text!r}: give IP:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port)


def certificate(store_dir: Path, cert: Path | None, key: Path | None) -> tuple[Path, Path, bool]:
    """The certificate to serve: the user's, or the store's (made now when an older store has none)."""
    if (cert is None) != (key is None):
        raise ConsoleError("give both --cert and --key, or neither (then the store's certificate is used)")
    if cert is not None and key is not None:
        for path in (cert, key):
            if not path.is_file():
                raise ConsoleError(f"{path} does not exist")
        return cert, key, False
    cert, key = console_cert_paths(store_dir)
    if cert.is_file() and key.is_file():
        return cert, key, False
    cert, key = make_console_cert(store_dir)
    return cert, key, True


def _serve(args: argparse.Namespace) -> int:
    store_dir = Path(args.store or os.environ.get("T10K_KMS_STORE", "kms-store"))
    return serve(store_dir, args.listen, mqtt=args.mqtt, cert=args.cert, key=args.key, as_json=args.json,
                 dbkey=DbKeySource(file=args.dbkey_file, interactive=False))


def serve(store_dir: Path, listen: str, *, mqtt: str | None = None, cert: Path | None = None, key: Path | None = None,
          as_json: bool = False, dbkey: DbKeySource | None = None) -> int:
    """Serve the console until SIGINT or SIGTERM; says where (one line, JSON with ``as_json``) once serving."""
    import uvicorn

    from .app import make_app

    host, port = parse_listen(listen)
    cert, key, made = certificate(store_dir, cert, key)
    app = make_app(store_dir, mqtt=mqtt, dbkey=dbkey)
    config = uvicorn.Config(app, host=host, port=port, ssl_certfile=str(cert), ssl_keyfile=str(key),
                            log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.ensure_future(server.serve())
        for _ in range(200):  # at most 10 s to bind
            if server.started or task.done():
                break
            await asyncio.sleep(0.05)
        if task.done():
            await task
            raise ConsoleError(f"the console could not serve on {listen}")
        bound = server.servers[0].sockets[0].getsockname() if server.servers else (host, port)
        url = f"https://{bound[0]}:{bound[1]}/"
        if as_json:
            print(json.dumps({"status": "serving", "url": url, "certificate": str(cert), "made_certificate": made,
                              "mqtt": mqtt}), flush=True)
        else:
            note = " (made now: this store had none)" if made else ""
            print(f"KMS console serving at {url} (certificate {cert}{note}); Ctrl-C stops it", flush=True)
        await task  # uvicorn stops on SIGINT and SIGTERM

    try:
        asyncio.run(main())
    except OSError as exc:
        raise ConsoleError(f"cannot serve on {listen}: {exc.strerror or exc}") from None
    print("KMS console stopped", file=sys.stderr)
    return 0
