"""The `paybot` command (see CONTRACT.md). Exit codes: 0 success, 1 a failed check or run, 2 bad usage or
configuration."""

from __future__ import annotations

import argparse
import os
import asyncio
import csv
import errno
import gc
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import logs, preview, staff_cli, text
from bot.domain.audit import Anchor
from bot.errors import ConfigError
from bot.services.check import customers_on_file
from bot.services.notify import why_unreachable
from bot.settings import Settings, setting_errors
from bot.storage import audit, refusals
from bot.storage.connect import open_database
from bot.storage.database import Database

log = logging.getLogger("paybot")


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(f"bad setting: {setting_errors(exc)}") from exc


def configure_logging(level: str) -> None:
    """stderr, every record through `bot.logs.SafeRecords` (escaped, redacted), chatty libraries held back."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        logs.make_safe(handler)
    logs.hold_libraries(logging.getLogger().level)


async def _database(settings: Settings) -> Database:
    """The database, ready: on SQLite migrated on the spot (as `serve` does), on PostgreSQL checked to be
    migrated; any problem is one line naming DATABASE_URL (exit 2)."""
    return await open_database(settings.database_url, audit_keys=settings.audit_keyring())


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    db = await open_database(settings.database_url, upgrade=True)
    await db.dispose()
    print("database is at the latest schema")
    return 0


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import create_app, server_options
    from bot.demo import run_demo
    from bot.runtime import start

    runtime = await start(settings)
    await runtime.warm_up()
    if not runtime.sources:
        print("No payment source is configured (see .env.example); here is what paybot does — `paybot demo`:\n")
        await run_demo(out=sys.stdout)
        print(f"\nServing anyway on http://{settings.host}:{settings.port} (health, metrics; webhooks 404).")
    app = create_app(settings, runtime=runtime, run_worker=not args.no_worker)
    runner = web.AppRunner(app, handle_signals=True, **server_options(settings))
    await runner.setup()
    try:
        await _listen(runner, settings)
        long_lived_from_here()
        log.info("paybot serving on %s:%s (worker %s)", settings.host, settings.port,
                 "off" if args.no_worker else "on")
        await _until_signalled()
    finally:
        await runner.cleanup()
        await runtime.close()
    return 0


async def _listen(runner: web.AppRunner, settings: Settings) -> None:
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"PORT {settings.port}: {settings.host}:{settings.port} is already in use "
                              "(another paybot? set PORT to a free port)") from exc
        raise ConfigError(f"HOST {settings.host} / PORT {settings.port}: cannot listen there "
                          f"({exc.strerror or exc})") from exc


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from bot.runtime import start

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before start-up: a stop asked for meanwhile is a clean one
        loop.add_signal_handler(sig, stop.set)
    runtime = await start(settings)
    await runtime.warm_up()
    long_lived_from_here()
    try:
        await runtime.run_worker(stop)
    finally:
        await runtime.close()
    return 0


#: Unreachable customers an import names one by one; the rest are counted.
UNREACHABLE_SHOWN = 20


async def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from bot.services import directory

    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    importer = directory.import_customers if args.what == "customers" else directory.import_invoices
    db = await _database(settings)
    try:
        with progress_bar(path, data) as progress, cyclic_gc_paused():
            report = await importer(db, data, dry_run=args.dry_run, progress=progress)
        on_file = {c.id: c for c in await customers_on_file(db)} if args.what == "customers" else {}
    except directory.FileError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    finally:
        await db.dispose()
    for line, message in report.errors:
        print(f"{path}:{line}: {message}", file=sys.stderr)
    configured = configured_channels()
    unreachable = 0
    for line, customer_id in report.landed:  # under today's configuration: `paybot check` says the same
        customer = on_file.get(customer_id)
        if customer is not None and (reason := why_unreachable(customer, configured)) is not None:
            unreachable += 1
            if unreachable <= UNREACHABLE_SHOWN:
                print(f"{path}:{line}: warning: customer {customer_id} cannot be reached: {reason}", file=sys.stderr)
    if unreachable > UNREACHABLE_SHOWN:  # a 100,000-row file with no channel configured is one line, not 100,000
        print(f"{path}: warning: {unreachable - UNREACHABLE_SHOWN} more customers cannot be reached "
              "(`paybot check` lists them all)", file=sys.stderr)
    if args.dry_run:
        for change in report.changes:
            print(f"{path}:{change.line}: {change.described()}")
    verb = "would import" if args.dry_run else "imported"
    print(f"{verb} {report.imported} {args.what}; {len(report.errors)} rows rejected ({report.created} new, "
          f"{report.updated} changed, {report.unchanged} unchanged){'; nothing written' if args.dry_run else ''}")
    return 1 if report.errors else 0


@contextmanager
def progress_bar(path: Path, data: bytes) -> Iterator[Callable[[int], None]]:
    """A bar of the file's lines on stderr while an import runs, when stderr is a terminal (a log stays clean)."""
    from tqdm import tqdm

    with tqdm(total=data.count(b"\n") or None, desc=path.name, unit=" lines", unit_scale=True, disable=None,
              file=sys.stderr, leave=False) as bar:
        def reached(line: int) -> None:
            bar.update(line - bar.n)
        yield reached


def long_lived_from_here() -> None:
    """What start-up built (modules, the SDKs' tables, settings, the app) lives as long as the process: out of the
    cyclic collector's sight from here on. Each full collection scanned it all again, 177,000 objects in 110–150 ms
    with the event loop stopped, every ten seconds or so under load: the webhooks' p99 (benchmarks/README.md)."""
    gc.collect()  # not to keep start-up's garbage for ever
    gc.freeze()


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during a bulk command (an import, a verify or export of the audit trail). They
    allocate a few objects per row, by the hundred thousand, and the collector would scan them, and every module's
    objects, again and again: a third of an import's CPU, a quarter of a verify's. Reference counting still frees
    each row and page as it goes; the few cycles wait for the collector's return (a 60,000-row import peaked 2 %
    higher)."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def configured_channels() -> list[str]:
    """The channels whose settings are complete in this environment (as `serve` would enable them)."""
    from bot.integrations.channels import CHANNELS

    return [name for name, factory in CHANNELS.items() if not factory.Settings().missing()]


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"--since: {value!r} is not an ISO 8601 time") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def cmd_audit_export(settings: Settings, args: argparse.Namespace) -> int:
    db = await _database(settings)
    out = sys.stdout
    try:
        with cyclic_gc_paused():
            async with db.read() as session:
                rows = audit.entries(session, since=_since(args.since), invoice=args.invoice)
                if args.format == "csv":
                    writer = csv.DictWriter(out, fieldnames=audit.EXPORT_FIELDS, lineterminator="\n")
                    writer.writeheader()
                    async for row in rows:
                        row = row | {"detail": json.dumps(row["detail"], sort_keys=True)}
                        writer.writerow({name: text.csv_cell(value) for name, value in row.items()})
                else:
                    out.write("[")
                    first = True
                    async for row in rows:
                        out.write(("\n" if first else ",\n") + json.dumps(row, default=str))
                        first = False
                    out.write("\n]\n")
                await _print_head(session)
    finally:
        await db.dispose()
    return 0


async def _print_head(session: AsyncSession) -> None:
    """Every export names the chain's head on stderr (stdout keeps the exported format exactly): keep it, and
    `paybot audit verify --anchor SEQ:HASH` later proves the trail up to it is unchanged."""
    anchor, key_id = await audit.head(session)
    if anchor is not None:
        print(f"audit head {anchor} ({f'keyed, key {key_id}' if key_id else 'unkeyed'}); "
              f"check later with: paybot audit verify --anchor {anchor}", file=sys.stderr)


async def cmd_audit_refusals(settings: Settings, args: argparse.Namespace) -> int:
    db = await _database(settings)
    try:
        async with db.read() as session:
            rows = refusals.rows(session, since=_since(args.since))
            if args.format == "csv":
                writer = csv.DictWriter(sys.stdout, fieldnames=refusals.EXPORT_FIELDS, lineterminator="\n")
                writer.writeheader()
                async for row in rows:
                    writer.writerow({name: text.csv_cell(value) for name, value in row.items()})
            else:
                sys.stdout.write("[")
                first = True
                async for row in rows:
                    sys.stdout.write(("\n" if first else ",\n") + json.dumps(row, default=str))
                    first = False
                sys.stdout.write("\n]\n")
    finally:
        await db.dispose()
    return 0


def _anchor(value: str) -> Anchor:
    try:
        return Anchor.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


async def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    db = await _database(settings)  # migrated (SQLite) or checked to be (PostgreSQL)
    await db.dispose()
    with cyclic_gc_paused():
        result = await audit.verify_in_parallel(settings.database_url, settings.audit_keyring(), args.anchor,
                                                processes=min(os.cpu_count() or 1, 8))
    if result.broken is not None:
        print(f"audit trail BROKEN at entry {result.broken.seq}: {result.broken.reason} "
              f"({result.count} entries verified before it)")
        return 1
    print(f"audit trail intact: {result.count} entries")
    for line in _what_it_proves(result):
        print(f"  {line}")
    return 0


def _what_it_proves(result: audit.Verification) -> list[str]:
    """Plainly what an intact verdict does and does not prove (see README, 'Audit trail')."""
    if result.count == 0:
        return []
    lines = []
    if result.first_keyed is None:
        lines.append("UNKEYED (no AUDIT_KEY): every entry matches its plain SHA-256 hash, which proves only that "
                     "nothing changed by accident; anyone who can write the database can rewrite entries and "
                     "recompute every hash. Set AUDIT_KEY.")
    else:
        keys = ", ".join(result.key_ids)
        plain = (f"entries 1-{result.first_keyed - 1} are plain SHA-256 (written before the key), "
                 if result.first_keyed > 1 else "")
        lines.append(f"KEYED: {plain}entries {result.first_keyed}-{result.count} are HMAC-SHA256 with key {keys}: "
                     "nobody without the key could have edited, inserted or removed any of them "
                     "undetected, or any entry before them.")
    if result.anchors:
        latest = max(result.anchors, key=lambda a: a.seq)
        lines.append(f"ANCHORED at {latest}: the trail still holds that published entry, unchanged with "
                     "everything before it.")
    lines.append("Not proven without a later anchor: that no newest entries were dropped (with the head moved "
                 "back). Compare with the latest published anchor: --anchor SEQ:HASH.")
    return lines


async def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from bot.runtime import start
    from bot.services.check import check

    runtime = await start(settings, announce=False)  # the summary is part of what check prints
    try:
        findings = await check(runtime.sources, runtime.channels, runtime.disabled, settings, runtime.db)
    finally:
        await runtime.close()
    for finding in findings:
        print(f"{finding.mark:<8} {finding.text}")
    problems = [f for f in findings if f.problem]
    print(f"\n{len(problems)} problem(s): fix them and run `paybot check` again" if problems else "\nall good")
    return 1 if problems else 0


async def cmd_send_test(settings: Settings, args: argparse.Namespace) -> int:
    from bot.runtime import start
    from bot.services.check import unreachable
    from bot.services.send_test import find_customer, send_test

    runtime = await start(settings, announce=False)
    try:
        customer = await find_customer(runtime.db, args.to)
        if customer is None:
            raise ConfigError(f"--to {args.to}: no such customer (import it first: paybot import customers FILE.csv)")
        outcomes = await send_test(runtime.db, runtime.notifier, runtime.worker, customer)
    finally:
        await runtime.close()
    if not outcomes:
        print(f"{customer.id} ({customer.name}): nobody can reach it: {unreachable(runtime.notifier, customer)}")
        return 1
    for outcome in outcomes:
        print(f"{outcome.status:<8} [TEST] thank-you via {outcome.channel} to {outcome.recipient}: {outcome.detail}")
    return 0 if all(o.delivered for o in outcomes) else 1


async def cmd_connect(settings: Settings, args: argparse.Namespace) -> int:
    """The authorization-code flow, step by step: the consent URL to open, then the callback, received by this
    command's own listener on HOST:PORT or, when `paybot serve` already answers there, by it."""
    from bot.handlers import oauth as oauth_routes
    from bot.keys import RUNTIME
    from bot.runtime import start

    runtime = await start(settings, announce=False)
    runner: web.AppRunner | None = None
    try:
        started = await runtime.connections.begin(args.source)
        print(f"Connecting paybot to {args.source}.\n\n"
              f"1. Make sure this address is a redirect URI of your {args.source} app (developer portal, "
              f"Keys & credentials / Redirect URIs):\n   {started.redirect_uri}\n"
              f"2. Open this address in a browser, sign in, and choose the company to connect:\n   {started.url}\n"
              f"3. Come back here: paybot says what was connected.\n", flush=True)
        app = web.Application()
        app[RUNTIME] = runtime
        app.add_routes(oauth_routes.routes())
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
            print(f"Waiting for the callback on {settings.host}:{settings.port} …", flush=True)
        except OSError:  # `paybot serve` answers there: it receives the callback, we watch the database
            print(f"{settings.host}:{settings.port} is in use (paybot serve?): waiting for it to receive the "
                  "callback …", flush=True)
        outcome = await _wait_for(runtime, started.state, args.timeout)
    finally:
        if runner is not None:
            await runner.cleanup()
        await runtime.close()
    if outcome is None:
        print(f"No callback within {args.timeout:g} s: run `paybot connect {args.source}` again.")
        return 1
    if "error" in outcome:
        print(f"Not connected: {outcome['error']}")
        return 1
    for tenant in outcome["tenants"]:
        print(f"Connected {args.source}: {text.line(tenant['name'])} (company id {tenant['id']}).")
    return 0


async def _wait_for(runtime: Any, state: str, timeout: float) -> dict[str, Any] | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        outcome = await runtime.connections.outcome(state)
        if outcome is not None:
            return outcome
        await asyncio.sleep(0.2)
    return None


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return await run_demo(out=sys.stdout)


async def cmd_subscribe(settings: Settings, args: argparse.Namespace) -> int:
    """Create the Business Central subscription; `paybot serve` must be reachable at the notification URL (BC
    calls its handshake before it answers)."""
    from bot.errors import ProviderError
    from bot.runtime import start
    from bot.services.bc_subscriptions import BcSubscriptions, notification_url

    runtime = await start(settings, announce=False)
    try:
        source = runtime.sources.get("business-central")
        if source is None:
            missing = ", ".join(runtime.disabled.get("business-central", [])) or "its settings"
            raise ConfigError(f"business-central is not configured: set {missing}")
        url = notification_url(source, settings)  # type: ignore[arg-type]
        try:
            created = await BcSubscriptions(runtime.db, runtime.notifier, source).subscribe(url)  # type: ignore[arg-type]
        except ProviderError as exc:
            print(f"Business Central refused the subscription: {exc}", file=sys.stderr)
            return 1
    finally:
        await runtime.close()
    print(f"subscribed {created.id} to {created.resource} at {created.notification_url}; expires "
          f"{created.expires_at.isoformat()} (paybot's worker renews it)")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="paybot", description="Acknowledges every customer payment, at once.")
    commands = root.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="HTTP server and an in-process delivery worker")
    serve.add_argument("--no-worker", action="store_true", help="HTTP only (when workers run separately)")
    serve.set_defaults(run=cmd_serve)
    commands.add_parser("worker", help="delivery worker only").set_defaults(run=cmd_worker)
    commands.add_parser("migrate", help="create or upgrade the schema").set_defaults(run=cmd_migrate)
    importer = commands.add_parser("import", help="upsert customers or invoices from CSV")
    importer.add_argument("what", choices=["customers", "invoices"])
    importer.add_argument("file", help="CSV: UTF-8, UTF-16 or Windows-1252; separated by , ; or tabs")
    importer.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    importer.set_defaults(run=cmd_import)
    audit_cmd = commands.add_parser("audit", help="export or verify the audit trail")
    audit_sub = audit_cmd.add_subparsers(dest="audit_command", required=True)
    export = audit_sub.add_parser("export", help="the audit trail, oldest first, to stdout")
    export.add_argument("--format", choices=["json", "csv"], default="json")
    export.add_argument("--since", help="ISO 8601 time; entries at or after it")
    export.add_argument("--invoice", help="only entries about this invoice number")
    export.set_defaults(run=cmd_audit_export)
    verify = audit_sub.add_parser("verify", help="check the hash chain")
    verify.add_argument("--anchor", action="append", type=_anchor, default=[], metavar="SEQ:HASH",
                        help="a published head (log, finance channel, export): entry SEQ must have this hash")
    verify.set_defaults(run=cmd_audit_verify)
    refused = audit_sub.add_parser("refusals", help="refused webhooks, summarised per source, reason, remote, window")
    refused.add_argument("--format", choices=["json", "csv"], default="json")
    refused.add_argument("--since", help="ISO 8601 time; windows ending at or after it")
    refused.set_defaults(run=cmd_audit_refusals)
    commands.add_parser("check", help="check the configuration and each provider's credentials; "
                        "exit 1 naming each problem").set_defaults(run=cmd_check)
    send_test_cmd = commands.add_parser("send-test", help="send a [TEST] thank-you through a customer's channels")
    send_test_cmd.add_argument("--to", required=True, metavar="CUSTOMER", help="the customer's id, as imported")
    send_test_cmd.set_defaults(run=cmd_send_test)
    commands.add_parser("demo", help="a self-contained run on a temporary database").set_defaults(run=cmd_demo)
    subscribe = commands.add_parser("subscribe", help="create a platform's webhook subscription (renewed by paybot)")
    subscribe.add_argument("platform", choices=["business-central"])
    subscribe.set_defaults(run=cmd_subscribe)
    connect = commands.add_parser("connect", help="connect an accounting platform (OAuth2): prints the address to "
                                  "open, then waits for the platform to send you back")
    connect.add_argument("source", help="e.g. quickbooks")
    connect.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the callback")
    connect.set_defaults(run=cmd_connect)
    staff_cli.add_commands(commands)
    preview.add_commands(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        result: Any = asyncio.run(args.run(settings, args))
        return int(result)
    except ConfigError as exc:
        print(f"paybot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 1
