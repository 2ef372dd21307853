"""Soak: 10,000 payments through `paybot serve` while SendGrid fails 30 % of its calls and the server is SIGKILLed
three times: nothing lost, and every email sent twice explained by a crash or a timeout window.

    .venv/bin/python benchmarks/soak.py [--engine sqlite|postgresql] [--payments 10000] [--fault-rate 0.3]
                                        [--kills 3] [--seed 14] [--in-flight 64] [--drain-seconds 360]

- The load: signed Stripe `invoice.paid` events, each paying its own seeded invoice (throughput.py's data and
  events), sent closed loop with --in-flight unanswered at most (as fast as paybot answers). What is not answered
  2xx (a refused connection while the server is down, a 503, a timeout) is sent again after a growing pause, the
  same event re-signed, as Stripe does, until it is.
- SendGrid: tests/fakes/sendgrid.py with its opt-in faults, in a process of its own: --fault-rate of the calls,
  evenly, answered 500; 429 with Retry-After: 1; held past paybot's client timeout and not taken ("hang"); or
  taken and then held past that timeout ("late": the message is there, paybot hears nothing and sends it again).
- The crashes: when --kills seeded thresholds of webhooks answered are passed, `paybot serve` is SIGKILLed and
  started again at once.
- The drain: after the last webhook is answered, until every customer's email is at the fake and no message is
  left pending, at most --drain-seconds; then a last SIGKILL and the checks.

Checks (any failure is a PROBLEM, exit 1):
  lost         every payment answered 2xx is recorded, once, and its customer's email was accepted at least once;
  duplicates   each email accepted more than once (by its notification key) is explained by what happened
               between its two acceptances: "crash" (a SIGKILL, and paybot audited the re-send as a possible
               duplicate), "timeout" (the earlier one was a "late" call), "timeout-load" (paybot's client timed out
               on a call the fake answered in time: a slow machine), or several; anything else is "unexplained";
  the outbox   no message dead or still pending after the drain (every fault injected is transient);
  the database one webhook_events row per event answered, no payment recorded twice, an intact audit chain.
The last line is `RESULT {json}` with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import heapq
import json
import re
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
from flood import RawHttp, child, free_port, load_average, wait_healthy  # noqa: E402
from throughput import (  # noqa: E402
    AUDIT_KEY, START_TIMEOUT, Scratch, check_database, email_of, environment, signed_event,
)
from webhooks import announced_port, cpu_seconds, serve_announced  # noqa: E402

CLIENT_TIMEOUT = 0.75    # paybot's SENDGRID_TIMEOUT_SECONDS here; the fake holds "hang" and "late" calls longer
HOLD = CLIENT_TIMEOUT + 0.5
REQUEST_TIMEOUT = 10.0   # the webhook sender's, as a platform gives up on a slow answer
RESEND_FIRST, RESEND_MAX = 0.5, 8.0  # the sender's pause before sending an unanswered event again, doubling
LANE_PAUSE = 0.2         # and a connection's, after a failure, before it sends anything
#: What RawHttp's errors mean to the sender (a status code stands for itself).
UNANSWERED = {"ConnectionRefusedError": "refused", "ConnectionResetError": "reset",
              "IndexError": "closed unanswered", "IncompleteReadError": "closed unanswered", "TimeoutError": "timeout"}
TIMED_OUT = re.compile(r"^(?P<at>\S+ \S+) .*notification (?P<id>\d+) will retry at ")
#: Delivery settings scaled to a few minutes: retries (2 s, doubling) and a dead worker's lease (60 s) would
#: otherwise make the drain wait for the unlucky message a quarter of an hour. The retry budget is the default.
SCALED = {"RETRY_BASE_SECONDS": "0.25", "RETRY_MAX_SECONDS": "8", "WORKER_LEASE_SECONDS": "20",
          "SENDGRID_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT)}


# --- the fake SendGrid (a child process: `soak.py _sendgrid RATE SEED`) ----------------------------------------------

async def fake_sendgrid(rate: float, seed: int) -> None:
    """tests.fakes.sendgrid with faults; `GET /soak/count` (recipients accepted), `GET /soak/outcomes` (every call:
    [arrived, kind, notification key, recipient], time.monotonic(), the same clock in every process)."""
    from tests.fakes.sendgrid import Faults, FakeSendGrid

    fake = FakeSendGrid(Faults(rate=rate, seed=seed, hang_seconds=HOLD))
    recipients: set[str] = set()
    mail_send = fake.mail_send

    async def counted(request: web.Request) -> web.StreamResponse:
        seen = len(fake.accepted)
        response = await mail_send(request)
        recipients.update(recipient(mail) for mail in fake.accepted[seen:])
        return response

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"accepted": len(recipients), "calls": len(fake.outcomes)})

    async def outcomes(request: web.Request) -> web.Response:
        return web.json_response([[o.at, o.kind, key_of(o.mail), recipient(o.mail)] for o in fake.outcomes])

    app = web.Application()
    app.router.add_post("/v3/mail/send", counted)
    app.router.add_get("/soak/count", count)
    app.router.add_get("/soak/outcomes", outcomes)
    await serve_announced(app)


def recipient(mail: dict[str, Any]) -> str:
    return str(mail["personalizations"][0]["to"][0]["email"])


def key_of(mail: dict[str, Any]) -> str:
    return str((mail["personalizations"][0].get("custom_args") or {}).get("notification_key", ""))


async def fake_get(port: int, path: str) -> Any:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = await reader.read()
    finally:
        writer.close()
    return json.loads(raw.partition(b"\r\n\r\n")[2])


# --- paybot, killed and started again --------------------------------------------------------------------------------

class Server:
    """`python -m bot serve` on one port, started again after each SIGKILL; `kills` holds when each one was sent."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env, self.workdir = env, workdir
        self.port = int(env["PORT"])
        self.log = (workdir / "paybot.log").open("ab")
        self.kills: list[float] = []
        self.cpu = 0.0  # CPU seconds of the processes already killed
        self._stack: contextlib.AsyncExitStack | None = None
        self._pid = 0

    async def start(self) -> None:
        stack = contextlib.AsyncExitStack()
        process = await stack.enter_async_context(child(
            [sys.executable, "-m", "bot", "serve"], cwd=self.workdir, stdout=self.log, stderr=self.log, env=self.env))
        self._stack, self._pid = stack, process.pid
        await wait_healthy(self.port, process)

    async def kill(self) -> None:
        """SIGKILL (flood.child's exit): what it committed survives, nothing else."""
        if self._stack is not None:
            self.cpu += cpu_seconds(self._pid)
            self.kills.append(time.monotonic())
            await self._stack.aclose()
            self._stack = None

    def cpu_now(self) -> float:
        return self.cpu + (cpu_seconds(self._pid) if self._stack is not None else 0.0)


# --- the webhook sender ----------------------------------------------------------------------------------------------

@dataclass
class Sender:
    """Stripe's side: every event sent until it is answered 2xx, what failed sent again after a pause."""

    port: int
    payments: int
    in_flight: int
    requests: int = 0                                        # every POST, first sends and re-sends
    resent: int = 0                                          # of which re-sends
    answered: dict[int, float] = field(default_factory=dict)  # invoice n → monotonic time of its 2xx
    failures: Counter[str] = field(default_factory=Counter)  # what the re-sent requests got instead

    async def run(self) -> None:
        http = RawHttp(self.port, REQUEST_TIMEOUT)
        fresh = iter(range(1, self.payments + 1))
        again: list[tuple[float, int, int]] = []  # (due, n, tries so far), a heap
        wake = asyncio.Event()

        def next_event() -> tuple[int, int] | None:
            if again and again[0][0] <= time.monotonic():
                _, n, tries = heapq.heappop(again)
                return n, tries
            first = next(fresh, None)
            return None if first is None else (first, 0)

        async def lane() -> None:
            while len(self.answered) < self.payments:
                picked = next_event()
                if picked is None:  # nothing due: wait for the next re-send, or for another lane to finish one
                    wake.clear()
                    pause = again[0][0] - time.monotonic() if again else 1.0
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), max(pause, 0.01))
                    continue
                n, tries = picked
                body, signature = signed_event(n, "soak")
                self.requests += 1
                self.resent += tries > 0
                status = await http.post(("/webhooks/stripe", body, {"Content-Type": "application/json",
                                                                      "Stripe-Signature": signature}))
                if status.startswith("2"):
                    self.answered.setdefault(n, time.monotonic())
                    wake.set()
                    continue
                self.failures[UNANSWERED.get(status, status)] += 1
                due = time.monotonic() + min(RESEND_MAX, RESEND_FIRST * 2 ** tries)
                heapq.heappush(again, (due, n, tries + 1))
                wake.set()
                await asyncio.sleep(LANE_PAUSE)  # a server that is down is not offered every event in a moment

        try:
            await asyncio.gather(*(lane() for _ in range(self.in_flight)))
        finally:
            http.close()


async def crash_at(server: Server, sender: Sender, thresholds: Sequence[int]) -> None:
    """SIGKILL the server as the number of webhooks answered passes each threshold; start it again at once."""
    for threshold in thresholds:
        while len(sender.answered) < threshold:
            await asyncio.sleep(0.02)
        await server.kill()
        print(f"  SIGKILL at {len(sender.answered)} answered; restarting", flush=True)
        await server.start()


# --- what the database and the fake say --------------------------------------------------------------------------------

async def outbox_depth(database_url: str) -> dict[str, int]:
    from bot.storage import outbox
    from bot.storage.engine import create_engine, sessions

    engine = create_engine(database_url)
    try:
        async with sessions(engine)() as session:
            return await outbox.depth(session)
    finally:
        await engine.dispose()


@dataclass
class Recorded:
    per_invoice: Counter[str]   # payments per invoice number
    flagged: Counter[str]       # notification key → sends paybot audited as a possible duplicate (after a crash)
    events: dict[str, int]      # webhook events by status
    keys: dict[int, str]        # notification id → key


async def recorded(database_url: str) -> Recorded:
    """What the database holds, for the checks."""
    from bot.storage import models
    from bot.storage.engine import create_engine, sessions

    engine = create_engine(database_url)
    try:
        async with sessions(engine)() as session:
            rows = await session.execute(select(models.Invoice.number, func.count(models.Payment.id)).join(
                models.Payment, models.Payment.invoice_id == models.Invoice.id).group_by(models.Invoice.number))
            per_invoice = Counter({number: int(count) for number, count in rows.all()})
            keys = dict((await session.execute(select(models.Notification.id,
                                                      models.Notification.idempotency_key))).all())
            flagged = Counter[str]()
            for (detail,) in (await session.execute(select(models.AuditEntry.detail).where(
                    models.AuditEntry.kind == "notification.sent"))).all():
                if (detail or {}).get("possible_duplicate"):
                    flagged[keys[detail["notification_id"]]] += 1
            events = dict((await session.execute(select(models.WebhookEvent.status, func.count()).group_by(
                models.WebhookEvent.status))).all())
    finally:
        await engine.dispose()
    return Recorded(per_invoice, flagged, {str(k): int(v) for k, v in events.items()}, keys)


def timeouts_logged(log: Path, ids: dict[int, str]) -> dict[str, list[float]]:
    """When paybot's SendGrid client gave up on a call, by notification key (its log's "will retry … TimeoutError"
    lines), on the time.monotonic() scale: a call the fake answered in time can still reach paybot too late on a
    loaded machine, and that is the same timeout window."""
    offset = time.time() - time.monotonic()
    found: dict[str, list[float]] = defaultdict(list)
    for line in log.read_text(errors="replace").splitlines():
        if "will retry at" in line and "sendgrid unreachable: TimeoutError" in line:
            match = TIMED_OUT.search(line)
            if match and int(match["id"]) in ids:
                at = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp() - offset
                found[ids[int(match["id"])]].append(at)
    return found


def explain(outcomes: list[list[Any]], kills: Sequence[float], flagged: Counter[str],
            timed_out: dict[str, list[float]]) -> tuple[Counter[str], list[str]]:
    """Each acceptance after a message's first, by what happened since the one before: "crash" (a SIGKILL, and
    paybot audited a re-send of the message as a possible duplicate), "timeout" (the one before was a "late" call:
    accepted, answered after paybot's timeout), "timeout-load" (answered in time by the fake, but paybot's client
    timed out on it: the machine or its event loop was slow), combinations joined by "+", or "unexplained"."""
    accepted: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for at, kind, key, _ in outcomes:
        if kind in ("accepted", "late"):
            accepted[key].append((at, kind))
    kinds, unexplained = Counter[str](), []
    for key, sends in accepted.items():
        for (before, kind), (after, _) in zip(sends, sends[1:], strict=False):
            crash = bisect.bisect_left(kills, after) > bisect.bisect_left(kills, before) and flagged[key] > 0
            slow = kind != "late" and any(before <= t <= after for t in timed_out.get(key, ()))
            why = "+".join(w for w, held in (("crash", crash), ("timeout", kind == "late"), ("timeout-load", slow))
                           if held)
            kinds[why or "unexplained"] += 1
            if not why:
                unexplained.append(key)
    return kinds, unexplained


# --- the run -----------------------------------------------------------------------------------------------------------

async def soak(args: argparse.Namespace, scratch: Scratch, workdir: Path) -> tuple[dict[str, Any], list[str]]:
    database_url = await scratch.fresh("payments")
    async with child([sys.executable, __file__, "_sendgrid", str(args.fault_rate), str(args.seed)],
                     stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                     stderr=asyncio.subprocess.DEVNULL) as fake:
        assert fake.stdout is not None
        fake_port = await asyncio.wait_for(announced_port(fake.stdout), START_TIMEOUT)
        env = environment(database_url, free_port(), fake_port, args, "deferred") | SCALED
        del env["INGEST_MODE"]  # paybot's default
        server = Server(env, workdir)
        rng = random.Random(args.seed)
        thresholds = sorted(rng.randrange(args.payments // 10, args.payments * 9 // 10) for _ in range(args.kills))
        started = time.monotonic()
        await server.start()
        sender = Sender(server.port, args.payments, args.in_flight)
        try:
            await asyncio.gather(sender.run(), crash_at(server, sender, thresholds))
            answered_in = time.monotonic() - started
            print(f"  all {args.payments} answered 2xx after {answered_in:.0f} s; draining", flush=True)
            drain_started, depth = time.monotonic(), {}
            while time.monotonic() - drain_started < args.drain_seconds:
                count = await fake_get(fake_port, "/soak/count")
                depth = await outbox_depth(database_url)
                if count["accepted"] >= args.payments and not depth.get("pending") and not depth.get("sending"):
                    break
                await asyncio.sleep(1.0)
            drained_in = time.monotonic() - drain_started
        finally:
            cpu = server.cpu_now()
            await server.kill()
        outcomes = await fake_get(fake_port, "/soak/outcomes")
    if args.keep:
        (workdir / "outcomes.json").write_text(json.dumps(outcomes))
    took = time.monotonic() - started
    kills = server.kills[:-1]  # the last one ends the run

    db = await recorded(database_url)
    per_invoice, flagged, events = db.per_invoice, db.flagged, db.events
    accepted_to = {to for _, kind, _, to in outcomes if kind in ("accepted", "late")}
    lost = [n for n in sender.answered if per_invoice[f"INV-{n:06d}"] < 1 or email_of(n) not in accepted_to]
    twice = sorted(number for number, count in per_invoice.items() if count > 1)
    kinds, unexplained = explain(outcomes, kills, flagged, timeouts_logged(workdir / "paybot.log", db.keys))
    faults = Counter(kind for _, kind, _, _ in outcomes)
    problems = await check_database(database_url, len(sender.answered))
    if lost:
        problems.append(f"{len(lost)} LOST (answered 2xx, not recorded or never emailed): invoices "
                        f"{', '.join(map(str, sorted(lost)[:10]))}")
    if twice:
        problems.append(f"{len(twice)} invoices paid twice: {', '.join(twice[:10])}")
    if unexplained:
        problems.append(f"{len(unexplained)} duplicate sends UNEXPLAINED (no crash, no late answer in between): "
                        f"{', '.join(sorted(set(unexplained))[:10])}")
    if set(events) != {"processed"}:
        problems.append(f"webhook events by status: {events} (all should be processed)")
    left = {status: n for status, n in depth.items() if status not in ("sent", "cancelled")}
    if left:
        problems.append(f"outbox after the drain: {left} (every fault injected was transient)")
    figures = {
        "engine": args.engine, "payments": args.payments, "fault_rate": args.fault_rate, "seed": args.seed,
        "requests_sent": sender.requests, "answered_2xx": len(sender.answered), "resent_by_sender": sender.resent,
        "sender_failures": dict(sender.failures), "kills": len(kills), "provider_calls": len(outcomes),
        "provider_faults": {k: v for k, v in faults.items() if k != "accepted"},
        "acknowledged": len(accepted_to), "emails_accepted": sum(faults[k] for k in ("accepted", "late")),
        "duplicates": sum(kinds.values()), "duplicates_by_cause": dict(kinds),
        "flagged_possible_duplicate_by_paybot": sum(flagged.values()), "lost": len(lost), "outbox": depth,
        "seconds_to_answer_all": round(answered_in, 1), "drain_seconds": round(drained_in, 1),
        "run_seconds": round(took, 1), "server_cpu_ms_per_payment": round(cpu * 1000 / max(len(accepted_to), 1), 2),
    }
    return figures, problems


def report(f: dict[str, Any], problems: list[str]) -> None:
    causes = ", ".join(f"{why} {n}" for why, n in sorted(f["duplicates_by_cause"].items())) or "none"
    faults = ", ".join(f"{kind} {n}" for kind, n in sorted(f["provider_faults"].items()))
    rows = [
        ("webhooks sent (first sends + re-sends)", f"{f['requests_sent']}"),
        ("  answered 2xx (distinct events)", f"{f['answered_2xx']} of {f['payments']}"),
        ("  re-sent by the sender (not answered 2xx)", f"{f['resent_by_sender']}: "
         + (", ".join(f"{k} {v}" for k, v in sorted(f["sender_failures"].items())) or "none")),
        ("SIGKILLs of paybot serve (each restarted)", f"{f['kills']}"),
        ("SendGrid calls / faults injected", f"{f['provider_calls']} / {faults}"),
        ("payments acknowledged (customer emailed)", f"{f['acknowledged']}"),
        ("emails accepted by the fake", f"{f['emails_accepted']}"),
        ("duplicate sends, by cause", f"{f['duplicates']}: {causes}"),
        ("  audited by paybot as possible duplicates", f"{f['flagged_possible_duplicate_by_paybot']}"),
        ("LOST", f"{f['lost']}"),
        ("outbox at the end", json.dumps(f["outbox"])),
        ("time: all answered / drain / run", f"{f['seconds_to_answer_all']} s / {f['drain_seconds']} s / "
         f"{f['run_seconds']} s"),
        ("server CPU per acknowledged payment", f"{f['server_cpu_ms_per_payment']} ms"),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for problem in problems:
        print(f"  PROBLEM: {problem}")


async def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="paybot-soak-"))
    scratch = Scratch(workdir, args.engine)
    try:
        print(f"soak: {args.engine}, {args.payments} payments, SendGrid failing {args.fault_rate:.0%} of calls, "
              f"{args.kills} SIGKILLs, seed {args.seed}; load average {load_average()}", flush=True)
        await scratch.template("payments", args.payments, 0)
        figures, problems = await soak(args, scratch, workdir)
        figures["load_average"] = load_average()
        report(figures, problems)
        figures["problems"] = problems
        print(f"RESULT {json.dumps(figures, sort_keys=True)}")
        return 1 if problems else 0
    finally:
        await scratch.drop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--payments", type=int, default=10_000)
    parser.add_argument("--fault-rate", type=float, default=0.3, help="share of SendGrid calls that fail (0.3)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of paybot serve during the load (3)")
    parser.add_argument("--seed", type=int, default=14, help="for the kill moments and the faults")
    parser.add_argument("--in-flight", type=int, default=64, help="webhooks unanswered at once, at most (64)")
    parser.add_argument("--drain-seconds", type=float, default=360.0)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (paybot's log, the database)")
    args = parser.parse_args(argv)
    if not (100 <= args.payments <= 100_000 and 0 <= args.fault_rate < 1 and 0 <= args.kills <= 20
            and 1 <= args.in_flight <= 1024):
        parser.error("--payments 100..100000, --fault-rate 0..1, --kills 0..20, --in-flight 1..1024")
    return args


def entry(argv: Sequence[str]) -> int:
    if argv[:1] == ["_sendgrid"]:
        asyncio.run(fake_sendgrid(float(argv[1]), int(argv[2])))
        return 0
    return asyncio.run(main(parse(argv)))


if __name__ == "__main__":
    raise SystemExit(entry(sys.argv[1:]))
