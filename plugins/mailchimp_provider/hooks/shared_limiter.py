"""One budget of Mailchimp connections per API key, shared by every process: leases in Redis.

Mailchimp counts the 10 simultaneous connections of an API key across all its clients. In a Celery
deployment the hooks of many processes (workers on several machines, the triggerer) talk to the
same account, and a per-process cap cannot see the others. A Celery deployment already has Redis,
so every request takes a *lease* there first:

* a sorted set per account, ``mailchimp:inflight:<fingerprint>`` (a hash of the credential; the
  key itself never reaches Redis), holds one member per request in flight, scored by the lease's
  expiry time;
* taking a lease is one Lua script (atomic): drop expired leases, and add ours only while fewer
  than ``budget`` are held; giving it back is one ``ZREM``;
* a lease lasts ``lease_seconds`` (30) and a thread of the holding process renews its leases every
  third of that, so a request may take as long as it needs, while the leases of a process that
  died (a SIGKILLed worker) lapse within 30 seconds instead of blocking the budget for good.

A caller that finds the budget full polls again after a short, growing, jittered sleep (2 to 50
ms): waits happen only when more than ``budget`` requests want to run, and Mailchimp answers take
far longer than that. The per-process cap of ``hooks.limiter`` still applies first, so threads of
one process queue locally without asking Redis.

Configuration (connection extra first, then the environment): ``limiter_redis_url`` /
``MAILCHIMP_LIMITER_REDIS_URL`` turns it on; ``limiter_budget`` / ``MAILCHIMP_LIMITER_BUDGET``
(default 10, Mailchimp's limit; lower it when other integrations use the same account). Without a
URL the hook keeps the per-process cap only. When Redis cannot be reached the request goes ahead
under the per-process cap, with a warning: a Celery deployment whose Redis is down has stopped
anyway, and the retry policy absorbs any 429 that results.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailchimp_provider.errors import MailchimpConfigError

if TYPE_CHECKING:
    import redis
    import redis.asyncio

log = logging.getLogger(__name__)

ENV_REDIS_URL = "MAILCHIMP_LIMITER_REDIS_URL"
ENV_BUDGET = "MAILCHIMP_LIMITER_BUDGET"
EXTRA_REDIS_URL = "limiter_redis_url"
EXTRA_BUDGET = "limiter_budget"
KEY_PREFIX = "mailchimp:inflight:"
DEFAULT_BUDGET = 10
DEFAULT_LEASE_SECONDS = 30.0
_MIN_POLL, _MAX_POLL = 0.002, 0.05
_WAIT_WARNING_EVERY = 60.0
_UNREACHABLE_WARNING_EVERY = 60.0

# KEYS[1] the account's set; ARGV: lease id, budget, lease length in ms. Returns 1 if taken.
_ACQUIRE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
  return 1
end
return 0
"""
# KEYS[1] the account's set; ARGV: lease length in ms, then the lease ids. Returns how many lived.
_RENEW = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local alive = 0
for i = 2, #ARGV do
  alive = alive + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[1]))
return alive
"""


@dataclass(frozen=True)
class SharedBudget:
    """Where the leases live and how many an account may hold at once."""

    redis_url: str
    budget: int = DEFAULT_BUDGET
    lease_seconds: float = DEFAULT_LEASE_SECONDS

    def __post_init__(self) -> None:
        if not 1 <= self.budget <= DEFAULT_BUDGET:
            raise MailchimpConfigError(
                f"limiter budget must be between 1 and {DEFAULT_BUDGET} (Mailchimp's simultaneous connections "
                f"per API key), got {self.budget}"
            )
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise MailchimpConfigError(
                f"limiter Redis URL must start with redis://, rediss:// or unix://, got {self.redis_url.split('@')[-1]!r}"
            )


def shared_budget_from_connection(conn: Any) -> SharedBudget | None:
    """The shared budget a connection asks for: its extra, else the environment; None when off."""
    extra = conn.extra_dejson if conn is not None else {}
    url = str(extra.get(EXTRA_REDIS_URL) or os.environ.get(ENV_REDIS_URL) or "").strip()
    if not url or url.lower() == "none":
        return None
    raw_budget = extra.get(EXTRA_BUDGET) or os.environ.get(ENV_BUDGET) or DEFAULT_BUDGET
    try:
        budget = int(raw_budget)
    except (TypeError, ValueError):
        raise MailchimpConfigError(
            f"Connection '{getattr(conn, 'conn_id', None)}': {EXTRA_BUDGET} / ${ENV_BUDGET} must be an integer, "
            f"got {raw_budget!r}"
        ) from None
    return SharedBudget(url, budget)


class _Held:
    """The leases this process holds, renewed by one daemon thread (re-created after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[tuple[SharedBudget, str], set[str]] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, budget: SharedBudget, key: str, lease: str) -> None:
        with self._lock:
            if self._pid != os.getpid():  # forked (Celery prefork, Airflow's task runner): no thread here
                self._leases, self._thread, self._pid = {}, None, os.getpid()
            self._leases.setdefault((budget, key), set()).add(lease)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._renew_forever, name="mailchimp-lease-renewal", daemon=True)
                self._thread.start()

    def discard(self, budget: SharedBudget, key: str, lease: str) -> None:
        with self._lock:
            leases = self._leases.get((budget, key))
            if leases is not None:
                leases.discard(lease)
                if not leases:
                    del self._leases[(budget, key)]

    def _renew_forever(self) -> None:
        while True:
            with self._lock:
                snapshot = [(b, k, sorted(ls)) for (b, k), ls in self._leases.items() if ls]
                interval = min((b.lease_seconds for b, _, _ in snapshot), default=DEFAULT_LEASE_SECONDS) / 3
            for budget, key, leases in snapshot:
                try:
                    alive = _sync_client(budget.redis_url).eval(
                        _RENEW, 1, key, int(budget.lease_seconds * 1000), *leases
                    )
                except Exception as exc:  # noqa: BLE001 - a renewal that fails is retried next round
                    log.warning("Could not renew Mailchimp connection leases in Redis: %s", exc)
                    continue
                if int(alive) < len(leases):
                    log.warning(
                        "%d of this process's Mailchimp connection leases had lapsed before renewal "
                        "(process paused for more than %ss?); the budget may be exceeded briefly.",
                        len(leases) - int(alive), budget.lease_seconds,
                    )
            time.sleep(interval)


_held = _Held()
_clients: dict[tuple[int, str], Any] = {}
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]]" = weakref.WeakKeyDictionary()
_clients_lock = threading.Lock()
_unreachable_warned: dict[str, float] = {}


def _sync_client(url: str) -> "redis.Redis":
    import redis

    with _clients_lock:
        key = (os.getpid(), url)
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        return client


def _async_client(url: str) -> "redis.asyncio.Redis":
    import redis.asyncio

    loop = asyncio.get_running_loop()  # redis.asyncio clients belong to the loop that made them
    with _clients_lock:
        per_loop = _async_clients.setdefault(loop, {})
        client = per_loop.get(url)
        if client is None:
            client = per_loop[url] = redis.asyncio.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        return client


def account_key(fingerprint: str) -> str:
    """The Redis key of an account's leases (``fingerprint`` is a hash of the credential)."""
    return KEY_PREFIX + fingerprint


def _unreachable(budget: SharedBudget, exc: BaseException) -> None:
    now = time.monotonic()
    if now - _unreachable_warned.get(budget.redis_url, -1e9) >= _UNREACHABLE_WARNING_EVERY:
        _unreachable_warned[budget.redis_url] = now
        log.warning(
            "Redis for the shared Mailchimp connection budget is unreachable (%s: %s); requests go ahead "
            "under the per-process cap only until it is back.", type(exc).__name__, exc,
        )


class _Waiting:
    """Sleep schedule and periodic warning of one caller waiting for a lease."""

    def __init__(self, budget: SharedBudget) -> None:
        self.budget = budget
        self.delay = _MIN_POLL
        self.started = self.warned = time.monotonic()

    def next_delay(self) -> float:
        now = time.monotonic()
        if now - self.warned >= _WAIT_WARNING_EVERY:
            self.warned = now
            log.warning(
                "Waited %.0fs for one of the %d Mailchimp connections of this API key (other processes hold "
                "them all).", now - self.started, self.budget.budget,
            )
        delay, self.delay = self.delay, min(self.delay * 1.5, _MAX_POLL)
        return delay * random.uniform(0.5, 1.0)


def _is_redis_error(exc: BaseException) -> bool:
    import redis

    return isinstance(exc, (redis.RedisError, OSError))


def acquire(budget: SharedBudget, fingerprint: str) -> str | None:
    """Take a lease (blocking until one is free); its id, or None when Redis is unreachable."""
    key, lease = account_key(fingerprint), uuid.uuid4().hex
    waiting: _Waiting | None = None
    while True:
        try:
            taken = _sync_client(budget.redis_url).eval(
                _ACQUIRE, 1, key, lease, budget.budget, int(budget.lease_seconds * 1000)
            )
        except Exception as exc:
            if not _is_redis_error(exc):
                raise
            _unreachable(budget, exc)
            return None
        if taken:
            _held.add(budget, key, lease)
            return lease
        waiting = waiting or _Waiting(budget)
        time.sleep(waiting.next_delay())


def release(budget: SharedBudget, fingerprint: str, lease: str | None) -> None:
    """Give a lease back (a lease that cannot be given back lapses by itself)."""
    if lease is None:
        return
    key = account_key(fingerprint)
    _held.discard(budget, key, lease)
    try:
        _sync_client(budget.redis_url).zrem(key, lease)
    except Exception as exc:
        if not _is_redis_error(exc):
            raise
        _unreachable(budget, exc)


@contextmanager
def lease(budget: SharedBudget | None, fingerprint: str) -> Iterator[None]:
    """Hold one connection of the account's shared budget for the duration of the block."""
    if budget is None:
        yield
        return
    taken = acquire(budget, fingerprint)
    try:
        yield
    finally:
        release(budget, fingerprint, taken)


async def aacquire(budget: SharedBudget, fingerprint: str) -> str | None:
    """``acquire`` for event loops (the triggerer): never blocks the loop."""
    key, lease_id = account_key(fingerprint), uuid.uuid4().hex
    waiting: _Waiting | None = None
    while True:
        try:
            taken = await _async_client(budget.redis_url).eval(
                _ACQUIRE, 1, key, lease_id, budget.budget, int(budget.lease_seconds * 1000)
            )
        except Exception as exc:
            if not _is_redis_error(exc):
                raise
            _unreachable(budget, exc)
            return None
        if taken:
            _held.add(budget, key, lease_id)
            return lease_id
        waiting = waiting or _Waiting(budget)
        await asyncio.sleep(waiting.next_delay())


async def arelease(budget: SharedBudget, fingerprint: str, lease_id: str | None) -> None:
    if lease_id is None:
        return
    key = account_key(fingerprint)
    _held.discard(budget, key, lease_id)
    try:
        await _async_client(budget.redis_url).zrem(key, lease_id)
    except Exception as exc:
        if not _is_redis_error(exc):
            raise
        _unreachable(budget, exc)


@asynccontextmanager
async def alease(budget: SharedBudget | None, fingerprint: str) -> AsyncIterator[None]:
    """``lease`` for event loops."""
    if budget is None:
        yield
        return
    taken = await aacquire(budget, fingerprint)
    try:
        yield
    finally:
        await arelease(budget, fingerprint, taken)


def leases_held(budget: SharedBudget, fingerprint: str) -> int:
    """Leases of the account alive right now, across every process (for tests and monitoring)."""
    client = _sync_client(budget.redis_url)
    seconds, micros = client.time()
    return int(client.zcount(account_key(fingerprint), seconds * 1000 + micros // 1000, "+inf"))
