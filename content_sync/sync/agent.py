"""The sync agent: a process of its own that uses the link whenever there is one.

Jobs (APScheduler 3.x, fixed ids, UTC, coalesced, one instance each, jittered):

- ``releases``: one request asks the hub what is new; newer releases of the channels this box
  follows are installed (resumable downloads, every check of ``content_sync.sync.apply``);
- ``stats``: counts not sent yet become a signed batch; every batch waiting in the outbox is
  uploaded, one request each, and dropped when the hub acknowledges it;
- ``clock``: the hub's signed time fixes the box's clock (``appliance.stats.clock``);
- ``register``: the box tells the hub its status (channels, disk free, software version).

When the hub cannot be reached the jobs back off (exponential, jittered, capped) instead of trying
in a tight loop. What happened is kept in the catalog's ``kv`` table for ``library sync status`` and
the admin page: last attempt, last success, why the last try stopped, bytes used today.
"""
from __future__ import annotations

import json
import logging
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC

from appliance import messages
from appliance.messages import N_, Message
from appliance.settings import Settings
from appliance.storage import db as dbmod
from appliance.storage.keys import HUB_PUBLIC_KEY
from content_sync.protocol import batches as statsbatch
from content_sync.sync import apply
from content_sync.sync.registration import box_registration
from content_sync.sync.sources import SourceError, link_failure
from content_sync.sync.transfer import (
    Downloader,
    HttpReleaseSource,
    LinkClosed,
    LinkPolicy,
    backoff,
    is_retryable,
    parse_hours,
)

logger = logging.getLogger(__name__)

# The jobs' names are marked for translation: the system page says them in the librarian's language.
HUB_JOBS = (N_("register"), N_("clock"), N_("releases"), N_("stats"))
AGENT_JOBS = (*HUB_JOBS, N_("peers"))
DISCOVERY_WAIT_SECONDS = 8
DISCOVERY_QUIET_SECONDS = 3.0  # mDNS answers to one query come within a second or two of each other
STATE_KEYS = ("sync_last_attempt", "sync_last_success", "sync_last_error", "sync_failures", "sync_next_try")


class HubRefused(SourceError):
    """The hub answered with an error status; ``final`` when asking again cannot help (400, 403)."""

    def __init__(self, code: int, path: str, detail: str) -> None:
        super().__init__(N_("the hub answered %(code)d to %(path)s: %(detail)s"), code=code, path=path, detail=detail)
        self.code = code
        self.final = code in (400, 403)


def listen_for_peers(discovery, wait: float = DISCOVERY_WAIT_SECONDS, quiet: float = DISCOVERY_QUIET_SECONDS,
                     clock=time.monotonic, sleep=time.sleep) -> list:
    """The boxes heard once no new one has been heard for ``quiet`` seconds (or ``wait`` passed):
    stopping a second after the first answer missed a van heard after a neighbour."""
    deadline = clock() + wait
    heard: list = []
    last_new = clock()
    while clock() < deadline:
        now_heard = discovery.peers()
        if {p.box_id or p.name for p in now_heard} - {p.box_id or p.name for p in heard}:
            last_new = clock()
        heard = now_heard
        if heard and clock() - last_new >= quiet:
            break
        sleep(0.1)
    return heard


@dataclass
class JobResult:
    job: str
    ok: bool
    detail: str


class SyncAgent:
    def __init__(self, settings: Settings, *, clock=time.time, rng: random.Random | None = None,
                 sleep=time.sleep):
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.lock = threading.Lock()
        self.discovery = None  # a browse-only appliance.discovery.Discovery while running for good

    # -- plumbing --------------------------------------------------------------------------

    @property
    def hub(self) -> str:
        return self.settings.hub_url.rstrip("/")

    def policy(self) -> LinkPolicy:
        self.settings.staging_dir.mkdir(parents=True, exist_ok=True)
        return LinkPolicy(budget_bytes_per_day=self.settings.sync_budget_mb_per_day * 1024 * 1024,
                          hours=parse_hours(self.settings.sync_hours),
                          max_bytes_per_second=self.settings.sync_max_kbps * 1000 // 8,
                          clock=self.clock, sleep=self.sleep,
                          state_file=self.settings.staging_dir / "link-usage.json")

    def _db(self):
        return dbmod.connect(self.settings.db_path)

    def _request(self, path: str, *, data: bytes | None = None, content_type: str = "application/json",
                 policy: LinkPolicy | None = None, timeout: float = 60, headers: dict | None = None) -> dict:
        policy = policy or self.policy()
        policy.check()
        request = urllib.request.Request(self.hub + path, data=data, method="POST" if data is not None else "GET",
                                         headers={"Content-Type": content_type, "User-Agent": "library-sync",
                                                  **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                body = answer.read(4 * 1024 * 1024)
        except urllib.error.HTTPError as e:
            raise HubRefused(e.code, path, _refusal(e)) from None
        except (urllib.error.URLError, OSError) as e:
            raise SourceError(N_("cannot reach the hub at %(hub)s: %(detail)s"), hub=self.hub,
                              detail=link_failure(e)) from None
        policy.spent(len(body) + len(data or b""))
        return json.loads(body)

    def box_key(self) -> statsbatch.BoxKey:
        return statsbatch.load_box_key(self.settings.keys_dir)

    # -- jobs ------------------------------------------------------------------------------

    def register(self) -> str:
        self._request("/api/v1/boxes", data=json.dumps(self.registration()).encode())
        return "registered"

    def registration(self) -> dict:
        """This box's signed registration and status (sent to the hub, or handed to a van)."""
        return box_registration(self.settings)

    def fix_clock(self) -> str:
        path = self.settings.keys_dir / HUB_PUBLIC_KEY
        if not path.exists():
            return f"no hub key in {path}; the clock is not taken from the hub"
        from appliance.stats.counts import apply_trusted_time
        from content_sync.protocol.registration import verify_time

        moment = verify_time(self._request("/api/v1/time"), path.read_text().strip())
        db = self._db()
        try:
            apply_trusted_time(db, moment, "hub")
        finally:
            db.close()
        return "clock set from the hub"

    def check_releases(self) -> str:
        offered = self._request("/api/v1/releases").get("channels", {})
        db = self._db()
        done = []
        try:
            for channel in apply.subscribed_channels(db):
                version = (offered.get(channel) or {}).get("version")
                installed = apply.installed_version(db, channel)
                if version is None or (installed is not None and version <= installed):
                    continue
                source = HttpReleaseSource(Downloader(self.hub + "/releases/", self.policy(), rng=self.rng))
                result = apply.apply_release(self.settings, db, source, channel)
                done.append(apply.describe(result))
        finally:
            db.close()
        return "; ".join(done) or "nothing new"

    def upload_stats(self) -> str:
        key = self.box_key()
        db = self._db()
        try:
            statsbatch.export_batch(db, self.settings.outbox_dir, key,
                                    min_term_count=self.settings.stats_min_term_count, box_name=self.settings.box_name)
        finally:
            db.close()
        sent = dropped = 0
        hub_key = self.hub_public_key()
        own = statsbatch.outbox_folder(self.settings.outbox_dir, key.public_b64)
        for registration in sorted(self.settings.outbox_dir.glob("*/registration.json")):
            # Boxes whose batches this box carries introduce themselves first, in their own words,
            # once: the hub keeps it (or a newer one), so it is not carried again.
            try:
                self._request("/api/v1/boxes", data=registration.read_bytes())
            except HubRefused as e:
                if not e.final:
                    raise
                logger.warning("the hub refused a registration this box carried (%s); dropping it", e)
            registration.unlink(missing_ok=True)
        for path in statsbatch.pending_batches(self.settings.outbox_dir):
            batch = path.read_bytes()
            carried = {} if path.parent == own else statsbatch.carrier_headers(key, batch)  # signed: checkable
            try:
                answer = self._request("/api/v1/batches", data=batch, headers=carried)
            except HubRefused as e:
                # A batch carried for another box that the hub will never take (made up, or from a
                # box it does not know) is dropped, or it would stop every batch after it for good.
                if not e.final or path.parent == own:
                    raise
                logger.warning("the hub refused a batch this box carried (%s); dropping %s", e, path.name)
                path.unlink(missing_ok=True)
                dropped += 1
                continue
            sent += len(answer.get("ack", []))
            statsbatch.remember_acks(self.settings.outbox_dir, answer.get("ack", []), hub_key)
        return f"{sent} batch(es) delivered" + (f", {dropped} carried batch(es) refused by the hub" if dropped else "")

    def hub_public_key(self) -> str | None:
        path = self.settings.keys_dir / HUB_PUBLIC_KEY
        return path.read_text().strip() if path.exists() else None

    # -- running ---------------------------------------------------------------------------

    def jobs(self) -> list[str]:
        """The jobs that make sense here: the hub's when there is one, peers when they can be found."""
        out = list(HUB_JOBS) if self.hub else []
        if self.settings.peers or self.settings.discovery:
            out.append("peers")
        return out

    def known_peers(self) -> list:
        from appliance.discovery import Discovery, parse_peer_addresses

        found = parse_peer_addresses(self.settings.peers)
        if self.settings.discovery:
            discovery = self.discovery
            temporary = discovery is None
            if temporary:
                discovery = Discovery(name=self.settings.box_name, port=0, box_id=self.box_key().public_b64,
                                      interfaces=self.settings.discovery_interfaces.split(","), announce=False).start()
            try:
                found += listen_for_peers(discovery) if temporary else discovery.peers()
            finally:
                if temporary:
                    discovery.close()
        return found

    def exchange_with_peers(self) -> str:
        from content_sync.sync.peers import exchange

        peers = self.known_peers()
        if not peers:
            return "no other box nearby"
        lines = []
        for peer in peers:
            db = self._db()
            try:
                lines += exchange(self.settings, db, peer, policy=self.policy(), hub_key=self.hub_public_key())
            except SourceError as e:
                lines.append(f"{peer.name}: {e}")
            finally:
                db.close()
        return "; ".join(lines)

    def run_job(self, job: str) -> JobResult:
        """Run one job now unless the backoff says wait; record what happened."""
        if job == "peers":
            try:
                return JobResult(job, True, self.exchange_with_peers())
            except Exception as e:
                logger.warning("meeting peers failed: %s", e)
                return JobResult(job, False, str(e))
        if not self.hub:
            return JobResult(job, False, "no hub address (LIBRARY_HUB_URL)")
        with self.lock:
            state = self.read_state()
            if float(state.get("sync_next_try") or 0) > self.clock():
                return JobResult(job, False, "waiting after failures")
            self._put({"sync_last_attempt": f"{self.clock():.0f} {job}"})
            action = {"register": self.register, "clock": self.fix_clock, "releases": self.check_releases,
                      "stats": self.upload_stats}[job]
            try:
                detail = action()
            except LinkClosed as e:
                self._put({"sync_last_error": _error_text(job, e)})
                return JobResult(job, False, str(e))
            except Exception as e:
                failures = int(state.get("sync_failures") or 0) + 1
                retry = is_retryable(e) or isinstance(e, SourceError)
                wait = backoff(failures, base=30, cap=3600, rng=self.rng) if retry else 0
                self._put({"sync_last_error": _error_text(job, e), "sync_failures": str(failures),
                           "sync_next_try": f"{self.clock() + wait:.0f}"})
                logger.warning("sync job %s failed (%s); next try in %.0f s", job, e, wait)
                return JobResult(job, False, str(e))
            self._put({"sync_last_success": f"{self.clock():.0f} {job}", "sync_failures": "0", "sync_next_try": "0",
                       "sync_last_error": ""})
            logger.info("sync job %s: %s", job, detail)
            return JobResult(job, True, detail)

    def run_once(self) -> list[JobResult]:
        return [self.run_job(job) for job in self.jobs()]

    def read_state(self) -> dict:
        db = self._db()
        try:
            return {k: dbmod.get_setting(db, k) for k in STATE_KEYS}
        finally:
            db.close()

    def _put(self, values: dict) -> None:
        db = self._db()
        try:
            with db.atomic():
                for k, v in values.items():
                    dbmod.put_setting(db, k, v)
        finally:
            db.close()

    def status(self) -> dict:
        state = self.read_state()
        policy = self.policy()
        state["bytes_today"] = policy.used_today()
        state["pending_batches"] = len(statsbatch.pending_batches(self.settings.outbox_dir))
        state["hub"] = self.hub or None
        return state


def run_forever(agent: SyncAgent, interval_minutes: int) -> None:
    """The agent's process: scheduled jobs until SIGTERM."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = BlockingScheduler(timezone="UTC", job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
    minutes = max(1, interval_minutes)
    periods = {"register": minutes * 6, "clock": minutes * 6, "releases": minutes, "stats": minutes * 2,
               "peers": 1}
    if agent.settings.discovery:
        from appliance.discovery import Discovery

        agent.discovery = Discovery(name=agent.settings.box_name, port=0, box_id=agent.box_key().public_b64,
                                    interfaces=agent.settings.discovery_interfaces.split(","), announce=False).start()
    for job in agent.jobs():
        scheduler.add_job(agent.run_job, "interval", args=[job], id=f"sync-{job}", replace_existing=True,
                          minutes=periods[job], jitter=min(60, periods[job] * 6), next_run_time=_soon(agent, job))

    def stop(signum, frame):
        logger.info("sync agent stopping")
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        scheduler.start()
    finally:
        if agent.discovery is not None:
            agent.discovery.close()


def _soon(agent: SyncAgent, job: str):
    from datetime import datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=agent.rng.uniform(1, 10) + AGENT_JOBS.index(job) * 2)


def moment_text(value) -> str | None:
    """A moment the agent recorded ("<unix seconds> <job>") as "YYYY-MM-DD HH:MM UTC (job)"; None
    when there is none."""
    parts = moment_parts(value)
    return f"{parts[0]} ({parts[1]})" if parts else None


def moment_parts(value) -> tuple[str, str] | None:
    """A moment the agent recorded, as ("YYYY-MM-DD HH:MM UTC", job); None when there is none."""
    if not value:
        return None
    stamp, _, job = str(value).partition(" ")
    return f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(float(stamp)))} UTC", job


def _refusal(answer: urllib.error.HTTPError) -> str:
    """What the hub said when it refused a request: its JSON ``message`` (the hub's API answers
    refusals so), else the start of its body."""
    body = answer.read(2000).decode("utf-8", "replace")
    try:
        said = json.loads(body)
    except ValueError:
        said = None
    if isinstance(said, dict) and isinstance(said.get("message"), str):
        return said["message"]
    return body[:300]


def _error_text(job: str, error: BaseException) -> str:
    """What ``sync_last_error`` keeps: the message, with its values, as JSON."""
    if isinstance(error, (urllib.error.URLError, OSError)) and not isinstance(error, messages.SaidError):
        said_error = messages.say(N_("the link failed: %(detail)s"), detail=link_failure(error))
    else:
        said_error = messages.message_of(error)
    said = messages.say(N_("%(job)s: %(error)s"), job=Message(job), error=said_error)
    return json.dumps(said.as_json(), ensure_ascii=False)


def last_error(state: dict) -> Message | None:
    """The last error the agent recorded (a plain text when an older agent recorded it), or None."""
    value = state.get("sync_last_error")
    if not value:
        return None
    try:
        kept = json.loads(value)
    except ValueError:
        kept = value
    return messages.load(kept)


def state_text(state: dict) -> list[str]:
    """The agent's state for ``library sync status`` (the system page words it in the librarian's language)."""
    return [
        f"hub: {state.get('hub') or 'not set (LIBRARY_HUB_URL)'}",
        f"last attempt: {moment_text(state.get('sync_last_attempt')) or 'never'}",
        f"last success: {moment_text(state.get('sync_last_success')) or 'never'}",
        f"last error: {last_error(state) or 'none'}",
        f"bytes used today: {state.get('bytes_today', 0)}",
        f"statistics batches waiting: {state.get('pending_batches', 0)}",
    ]
