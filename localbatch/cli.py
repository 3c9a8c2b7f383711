"""``python -m localbatch serve``: run the local Batch service.

Keys come from the environment (``LOCALBATCH_ACCOUNT_KEY``,
``LOCALBATCH_STORAGE_ACCOUNT_KEY``) or from files (``--account-key-file``,
``--storage-account-key-file``), never from the command line, where ``ps``
would show them. When the server listens it prints one line
``localbatch listening on http://HOST:PORT`` and writes that URL to
``DATA_DIR/endpoint`` (atomically). SIGTERM/SIGINT stop it cleanly: task
processes are ended, state is kept (their tasks are requeued at next start).

TLS and Entra ID: ``--cert``/``--key`` serve HTTPS (the URL is then
``https://``); ``--oauth basic`` (needs HTTPS, as Azurite's option of the same
name) also accepts Entra ID bearer tokens, checking their claims but not their
signature (see :mod:`localbatch.auth`); ``--auth-modes AAD`` makes the account
Entra-only, as ``allowedAuthenticationModes`` does on Azure (no account key is
needed then). ``--ca-file`` adds a CA that the service's own downloads and
uploads trust (e.g. a local Azurite's over HTTPS).

Pool identities: ``--pool-identity RESOURCE_ID`` (repeatable) gives every pool
of the account that user-assigned identity (on Azure only the management plane
sets it); tasks' files that name it in ``identityReference`` are transferred
with its tokens, which nodes get from ``--identity-endpoint URL`` (a
managed-identity endpoint, header secret in ``$LOCALBATCH_IDENTITY_HEADER``;
see :mod:`localbatch.node_identity`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from localbatch import node_identity, storage, tls, weather
from localbatch.auth import Authenticator, AuthMode, SharedKeyVerifier
from localbatch.scheduler import Service, ServiceConfig
from localbatch.server import BatchApi, make_app
from localbatch.store import Store

log = logging.getLogger("localbatch")

ACCOUNT_KEY_ENV = "LOCALBATCH_ACCOUNT_KEY"
STORAGE_KEY_ENV = "LOCALBATCH_STORAGE_ACCOUNT_KEY"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m localbatch", description="A local Azure Batch service.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the service")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=0, help="port (0 = a free port)")
    s.add_argument("--data-dir", type=Path, required=True, help="state, node directories, endpoint file")
    s.add_argument("--account-name", required=True, help="Batch account name clients sign with")
    s.add_argument(
        "--account-key-file", type=Path, help=f"file holding the account key (else ${ACCOUNT_KEY_ENV})"
    )
    s.add_argument("--storage-blob-endpoint", help="blob endpoint of the linked (auto-storage) account")
    s.add_argument("--storage-account-name", help="name of the linked storage account")
    s.add_argument(
        "--storage-account-key-file",
        type=Path,
        help=f"file holding the storage key (else ${STORAGE_KEY_ENV})",
    )
    s.add_argument("--max-nodes", type=int, default=64, help="largest node count a pool may ask for")
    s.add_argument("--autoscale-nodes", type=int, default=1, help="nodes given to an autoscale pool")
    s.add_argument("--weather", help=f"weather profile: a .json/.toml file or {', '.join(weather.PRESETS)}")
    s.add_argument(
        "--autoscale-min-interval",
        type=float,
        default=300.0,
        help="shortest autoScaleEvaluationInterval accepted, in seconds (Batch: 300; lower for tests)",
    )
    s.add_argument(
        "--job-schedule-min-interval",
        type=float,
        default=60.0,
        help="shortest recurrenceInterval/startWindow of a job schedule, in seconds (Batch: 60; for tests)",
    )
    s.add_argument("--weather-seed", type=int, help="seed of the weather's decisions (else the profile's)")
    s.add_argument("--log-level", default=os.environ.get("LOCALBATCH_LOG_LEVEL", "INFO"))
    s.add_argument("--cert", type=Path, help="PEM certificate: serve HTTPS (with --key)")
    s.add_argument("--key", type=Path, help="PEM private key of --cert")
    s.add_argument(
        "--oauth",
        choices=["basic"],
        help="accept Entra ID bearer tokens (claims checked, signature not); needs --cert/--key",
    )
    s.add_argument(
        "--auth-modes",
        default=None,
        help="allowed authentication modes, comma-separated: SharedKey, AAD "
        "(default SharedKey, or SharedKey,AAD with --oauth; AAD alone: Entra-only)",
    )
    s.add_argument("--ca-file", type=Path, help="PEM CA its own transfers trust (besides public CAs)")
    s.add_argument(
        "--pool-identity",
        action="append",
        default=[],
        metavar="RESOURCE_ID",
        help="a user-assigned identity every pool has (repeatable); tasks' files may name it",
    )
    s.add_argument(
        "--identity-endpoint",
        metavar="URL",
        help=f"managed-identity endpoint the nodes get tokens from (header in ${node_identity.HEADER_ENV})",
    )
    s.add_argument(
        "--check-contract",
        type=Path,
        metavar="FILE",
        help="check every response against the Batch contract; append violations to FILE (JSON lines)",
    )
    return p


def _auth_modes(args: argparse.Namespace) -> frozenset[AuthMode]:
    """The allowed modes from the options; ValueError with what to change if they contradict."""
    if args.auth_modes is None:
        return frozenset({AuthMode.SHARED_KEY, AuthMode.AAD} if args.oauth else {AuthMode.SHARED_KEY})
    names = {m.value.lower(): m for m in AuthMode}
    modes: set[AuthMode] = set()
    for item in args.auth_modes.split(","):
        mode = names.get(item.strip().lower())
        if mode is None:
            raise ValueError(f"--auth-modes: unknown mode {item.strip()!r} (use SharedKey, AAD)")
        modes.add(mode)
    if AuthMode.AAD in modes and not args.oauth:
        raise ValueError("--auth-modes AAD needs --oauth basic")
    return frozenset(modes)


def _check_tls_args(args: argparse.Namespace) -> None:
    if (args.cert is None) != (args.key is None):
        raise ValueError("--cert and --key go together")
    if args.oauth and args.cert is None:
        raise ValueError("--oauth basic needs HTTPS: give --cert and --key (tokens are never taken in clear)")


def _secret(path: Path | None, env: str) -> str | None:
    if path is not None:
        return path.read_text(encoding="utf-8").strip()
    return os.environ.get(env) or None


def _write_endpoint(data_dir: Path, url: str) -> None:
    tmp = data_dir / f".endpoint.{os.getpid()}.tmp"
    tmp.write_text(url + "\n", encoding="utf-8")
    os.replace(tmp, data_dir / "endpoint")


def _authenticator(args: argparse.Namespace, account_key: str | None) -> Authenticator:
    modes = _auth_modes(args)
    shared = SharedKeyVerifier(args.account_name, account_key) if account_key else None
    return Authenticator(modes, shared)


async def serve(args: argparse.Namespace, account_key: str | None, storage_key: str | None) -> None:
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # The state holds the SAS URLs of tasks' files, as Batch does: keep it private to this user.
    data_dir.chmod(0o700)
    (data_dir / "endpoint").unlink(missing_ok=True)
    verifier = _authenticator(args, account_key)
    ssl_context = tls.server_context(args.cert, args.key) if args.cert else None
    if args.ca_file is not None:
        tls.trust_ca(args.ca_file, data_dir)
    node_identity.configure(
        node_identity.NodeIdentities(
            tuple(args.pool_identity), args.identity_endpoint, os.environ.get(node_identity.HEADER_ENV, "")
        )
    )
    auto = None
    if args.storage_blob_endpoint and args.storage_account_name and storage_key:
        auto = storage.AutoStorage(args.storage_blob_endpoint, args.storage_account_name, storage_key)
    store = Store(data_dir / "state.db")
    runner: web.AppRunner | None = None
    service: Service | None = None
    try:
        # The advertised URL is known only after binding; the service reads it lazily.
        sky: weather.Weather = args.sky
        config = ServiceConfig(
            data_dir,
            args.account_name,
            "",
            auto,
            args.max_nodes,
            args.autoscale_nodes,
            sky,
            args.autoscale_min_interval,
            args.job_schedule_min_interval,
        )
        service = Service(store, config)
        api = BatchApi(service, verifier)
        app = make_app(api)
        if args.check_contract is not None:
            from localbatch.contract import middleware  # imported only when asked: zero cost when off

            middleware.install(app, args.check_contract.resolve())
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        server = site._server  # aiohttp exposes the bound sockets only here
        sockets = getattr(server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else args.port
        url = f"{'https' if ssl_context else 'http'}://{args.host}:{port}"
        service.config = ServiceConfig(
            data_dir,
            args.account_name,
            url,
            auto,
            args.max_nodes,
            args.autoscale_nodes,
            sky,
            args.autoscale_min_interval,
            args.job_schedule_min_interval,
        )
        await service.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"localbatch listening on {url}", flush=True)
        _write_endpoint(data_dir, url)
        await stop.wait()
        log.info("stopping")
    finally:
        if service is not None:
            await service.stop()
        if runner is not None:
            await runner.cleanup()
        store.close()
        (data_dir / "endpoint").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The storage SDK logs every request (with redacted URLs) at INFO: too chatty for a server log.
    # urllib3 logs request lines, which would put SAS signatures in the log: never below WARNING.
    for noisy in ("azure", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        _check_tls_args(args)
        modes = _auth_modes(args)
    except ValueError as exc:
        print(f"localbatch: {exc}", file=sys.stderr)
        return 2
    account_key = _secret(args.account_key_file, ACCOUNT_KEY_ENV)
    if not account_key and AuthMode.SHARED_KEY in modes:
        print(f"localbatch: no account key (set {ACCOUNT_KEY_ENV} or --account-key-file)", file=sys.stderr)
        return 2
    storage_key = _secret(args.storage_account_key_file, STORAGE_KEY_ENV)
    try:
        args.sky = weather.load(args.weather, args.weather_seed)
    except weather.WeatherError as exc:
        print(f"localbatch: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args, account_key, storage_key))
    except ValueError as exc:
        print(f"localbatch: {exc}", file=sys.stderr)
        return 2
    return 0
