"""Redis job queue (QUEUE_BACKEND=redis): the JobQueue contract of the flat-file queue,
shared by every instance that uses the same Redis.

Keys under ``{ns}:``::

    job:{id}     hash: data (the immutable part, JSON), type, score, state
                 (pending|claimed|done|dead), attempts, max_attempts, last_error,
                 updated_at, not_before, claimed_by, claim_token, result (JSON)
    pending      zset id -> priority * 1e13 + enqueue sequence (the claim order)
    claimed      zset id -> last heartbeat (the lease)
    done         zset id -> finished at;   dead: zset id -> dead-lettered at
    keys         hash work key -> job id (dedup while queued or running)
    seq          the enqueue sequence;   wake: the channel enqueues publish on

Every state change is one Lua script (atomic in Redis), and "now" is always passed in
by the caller (the contract suite runs on a fake clock). Floats travel as Python's
repr strings, so Redis never rounds a timestamp. A runner's transition goes ahead
only while the stored claim (claimer + token) is still the runner's own.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from falconproc.queue.base import (DEAD, DONE, DONE_RETENTION_SECONDS, QUEUED, RETRYING, RUNNING, ClaimLost, Job,
                                   JobNotFound, JobQueue, QueueFull, QueueUnavailable)

_ID_RE = re.compile(r"[0-9]{2}-[0-9]{20}-[a-z0-9_]{1,32}-[0-9a-f]{8}")
_PRIORITY_WEIGHT = 10 ** 13

# KEYS: pending claimed done dead keys seq; job keys are built from the namespace ARGV[1].
_LIB = r"""
local ns = ARGV[1]
local function jk(id) return ns .. ':job:' .. id end
local function drop_key(id)
  local key = redis.call('HGET', jk(id), 'workkey')
  if key and redis.call('HGET', KEYS[5], key) == id then redis.call('HDEL', KEYS[5], key) end
end
local function owned(id, by, token)
  local f = redis.call('HMGET', jk(id), 'state', 'claimed_by', 'claim_token')
  return f[1] == 'claimed' and f[2] == by and f[3] == token
end
-- a failed attempt: dead-letter after the last one, else back to pending at retry_at
local function end_attempt(id, err, now, retry_at)
  local j = jk(id)
  local f = redis.call('HMGET', j, 'attempts', 'max_attempts', 'score')
  redis.call('ZREM', KEYS[2], id)
  redis.call('HSET', j, 'last_error', err, 'updated_at', now, 'claim_token', '')
  if tonumber(f[1]) >= tonumber(f[2]) then
    redis.call('HSET', j, 'state', 'dead')
    redis.call('ZADD', KEYS[4], now, id)
    drop_key(id)
    return 'dead'
  end
  redis.call('HSET', j, 'state', 'pending', 'not_before', retry_at)
  redis.call('ZADD', KEYS[1], f[3], id)
  return 'retrying'
end
"""

_SCRIPTS = {
    # ARGV: ns id workkey type score data now max_pending force max_attempts not_before
    "enqueue": r"""
local existing = redis.call('HGET', KEYS[5], ARGV[3])
if existing then
  local state = redis.call('HGET', jk(existing), 'state')
  if state == 'pending' or state == 'claimed' then return {'existing', existing} end
end
if ARGV[9] ~= '1' and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[8]) then return {'full', ''} end
redis.call('HSET', jk(ARGV[2]), 'data', ARGV[6], 'type', ARGV[4], 'score', ARGV[5], 'workkey', ARGV[3],
           'state', 'pending', 'attempts', 0, 'max_attempts', ARGV[10], 'last_error', '',
           'updated_at', ARGV[7], 'not_before', ARGV[11], 'claimed_by', '', 'claim_token', '', 'result', '')
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[2])
redis.call('HSET', KEYS[5], ARGV[3], ARGV[2])
return {'new', ARGV[2]}
""",
    # ARGV: ns now worker token type...
    "claim": r"""
local wanted = {}
for i = 5, #ARGV do wanted[ARGV[i]] = true end
local now = tonumber(ARGV[2])
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local f = redis.call('HMGET', jk(id), 'type', 'not_before')
  if wanted[f[1]] and tonumber(f[2]) <= now then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    redis.call('HINCRBY', jk(id), 'attempts', 1)
    redis.call('HSET', jk(id), 'state', 'claimed', 'claimed_by', ARGV[3], 'claim_token', ARGV[4],
               'updated_at', ARGV[2])
    return id
  end
end
return false
""",
    # ARGV: ns id by token now
    "heartbeat": r"""
if not owned(ARGV[2], ARGV[3], ARGV[4]) then return 'lost' end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[2])
return 'ok'
""",
    # ARGV: ns id by token now result
    "complete": r"""
if not owned(ARGV[2], ARGV[3], ARGV[4]) then return 'lost' end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
redis.call('HSET', jk(ARGV[2]), 'state', 'done', 'result', ARGV[6], 'updated_at', ARGV[5])
drop_key(ARGV[2])
return 'ok'
""",
    # ARGV: ns id by token now error requested_attempts backoff_base backoff_cap
    "fail": r"""
if not owned(ARGV[2], ARGV[3], ARGV[4]) then return 'lost' end
local j = jk(ARGV[2])
local f = redis.call('HMGET', j, 'attempts', 'max_attempts')
local attempts = math.min(math.max(tonumber(ARGV[7]), tonumber(f[1])), tonumber(f[2]))
redis.call('HSET', j, 'attempts', attempts)
local backoff = math.min(tonumber(ARGV[8]) * 2 ^ math.max(attempts - 1, 0), tonumber(ARGV[9]))
return end_attempt(ARGV[2], ARGV[6], ARGV[5], tostring(tonumber(ARGV[5]) + backoff))
""",
    # ARGV: ns id by token now
    "release": r"""
if not owned(ARGV[2], ARGV[3], ARGV[4]) then return 'lost' end
local j = jk(ARGV[2])
local attempts = math.max(tonumber(redis.call('HGET', j, 'attempts')) - 1, 0)
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HSET', j, 'state', 'pending', 'attempts', attempts, 'claimed_by', '', 'claim_token', '',
           'updated_at', ARGV[5], 'not_before', ARGV[5])
redis.call('ZADD', KEYS[1], redis.call('HGET', j, 'score'), ARGV[2])
return 'ok'
""",
    # ARGV: ns id token now lease dead_claimer(0/1) error
    "reap_one": r"""
local j = jk(ARGV[2])
local f = redis.call('HMGET', j, 'state', 'claim_token')
if f[1] ~= 'claimed' or f[2] ~= ARGV[3] then return 'skip' end
local beat = redis.call('ZSCORE', KEYS[2], ARGV[2])
local expired = beat and (tonumber(ARGV[4]) - tonumber(beat) > tonumber(ARGV[5]))
if not (expired or ARGV[6] == '1') then return 'skip' end
return end_attempt(ARGV[2], ARGV[7], ARGV[4], ARGV[4])
""",
    # ARGV: ns. Retrying and queued jobs share the pending zset: their attempts tell them
    # apart (the jobs looked at are bounded by MAX_QUEUE_SIZE, plus an upload's forced jobs).
    "stats": r"""
local retrying = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if tonumber(redis.call('HGET', jk(id), 'attempts')) > 0 then retrying = retrying + 1 end
end
return {redis.call('ZCARD', KEYS[1]), retrying, redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]),
        redis.call('ZCARD', KEYS[4])}
""",
    # ARGV: ns cutoff
    "prune_done": r"""
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[2])
for _, id in ipairs(ids) do
  redis.call('DEL', jk(id))
  redis.call('ZREM', KEYS[3], id)
end
return #ids
""",
}


def is_job_id(value: str) -> bool:
    return bool(_ID_RE.fullmatch(value))


class RedisQueue(JobQueue):
    def __init__(self, client: Any, *, namespace: str = "falconproc:queue", max_pending: int = 100,
                 max_attempts: int = 3, backoff_base: float = 1.0, backoff_cap: float = 10.0,
                 priorities: tuple[str, ...] = (), clock: Callable[[], float] = time.time, fsync: bool = True):
        super().__init__(max_pending=max_pending, max_attempts=max_attempts, backoff_base=backoff_base,
                         backoff_cap=backoff_cap, priorities=priorities, clock=clock)
        self.redis = client
        self.ns = namespace
        self._keys = [f"{namespace}:{name}" for name in ("pending", "claimed", "done", "dead", "keys", "seq")]
        self._scripts = {name: client.register_script(_LIB + body) for name, body in _SCRIPTS.items()}
        self._channel = f"{namespace}:wake"
        self._wake_r = self._wake_w = -1
        self._listener: threading.Thread | None = None

    def _run(self, name: str, *args: Any) -> Any:
        with _reachable():
            result = self._scripts[name](keys=self._keys, args=[self.ns, *args])
        return result.decode() if isinstance(result, bytes) else result

    # -- wake-ups: Redis pub/sub feeding a pipe the supervisor's select() waits on ----------

    def wakeup_fileno(self) -> int | None:
        if self._listener is None:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            self._listener = threading.Thread(target=self._listen, name="redis-queue-wake", daemon=True)
            self._listener.start()
        return self._wake_r

    def _listen(self) -> None:
        while True:
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self._channel)
                self._poke()  # (re)subscribed: jobs may have come meanwhile
                for message in pubsub.listen():
                    if message and message.get("type") == "message":
                        self._poke()
            except Exception:  # Redis gone: the supervisor's periodic pass goes on; retry
                time.sleep(1.0)

    def _poke(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # full: a wake-up is pending anyway

    def clear_wakeup(self) -> None:
        if self._wake_r >= 0:
            self._drain(self._wake_r)

    def _wake_supervisors(self) -> None:
        try:
            self.redis.publish(self._channel, b"1")
        except Exception:  # the job is stored; supervisors find it on their next pass
            pass

    # -- the interface ----------------------------------------------------------------

    def enqueue(self, type: str, content_hash: str, *, variant: str = "", priority: int | None = None,
                payload: dict[str, Any] | None = None, max_attempts: int | None = None,
                force: bool = False, delay: float = 0.0) -> Job:
        priority = min(max(self._priority_for(type, priority), 0), 99)
        now = self.clock()
        job = Job(id=f"{priority:02d}-{time.time_ns():020d}-{type}-{uuid.uuid4().hex[:8]}", type=type,
                  content_hash=content_hash, variant=variant, priority=priority,
                  max_attempts=max_attempts or self.max_attempts, created_at=now, updated_at=now,
                  not_before=now + delay if delay > 0 else 0.0, payload=payload or {})
        with _reachable():
            seq = self.redis.incr(self._keys[5])
        data = json.dumps({"type": type, "content_hash": content_hash, "variant": variant, "priority": priority,
                           "created_at": repr(now), "payload": job.payload})
        outcome, job_id = self._run("enqueue", job.id, job.key, type, priority * _PRIORITY_WEIGHT + seq, data,
                                    repr(now), self.max_pending if self.max_pending is not None else 2 ** 62,
                                    "1" if force else "0", job.max_attempts, repr(max(now, job.not_before)))
        outcome, job_id = _text(outcome), _text(job_id)
        if outcome == "full":
            raise QueueFull(f"the queue holds {self.max_pending} pending jobs")
        if outcome == "existing":
            return self.get(job_id)
        self._ring()
        return job

    def claim(self, types: list[str], worker_id: str | None = None) -> Job | None:
        if not types:
            return None
        job_id = self._run("claim", repr(self.clock()), worker_id or "", uuid.uuid4().hex, *types)
        return self.get(job_id) if job_id else None

    def _claim_args(self, job: Job) -> list[str]:
        return [job.id, job.claimed_by or "", job.claim_token or ""]

    def _check(self, job: Job, outcome: str) -> None:
        if outcome == "lost":
            raise ClaimLost(f"job {job.id} is no longer claimed by {job.claimed_by}")

    def heartbeat(self, job: Job) -> None:
        self._check(job, self._run("heartbeat", *self._claim_args(job), repr(self.clock())))

    def complete(self, job: Job, result: dict[str, Any] | None = None) -> Job:
        now = self.clock()
        self._check(job, self._run("complete", *self._claim_args(job), repr(now),
                                   json.dumps(result) if result is not None else ""))
        return self._refresh(job)

    def fail(self, job: Job, error: str) -> Job:
        self._check(job, self._run("fail", *self._claim_args(job), repr(self.clock()), error[:2000],
                                   job.attempts, repr(self.backoff_base), repr(self.backoff_cap)))
        return self._refresh(job)

    def release(self, job: Job) -> Job:
        self._check(job, self._run("release", *self._claim_args(job), repr(self.clock())))
        return self._refresh(job)

    def _refresh(self, job: Job) -> Job:
        """Update the caller's Job in place from the stored one (as the flat-file queue does)."""
        stored = self.get(job.id)
        for name in ("status", "attempts", "max_attempts", "last_error", "updated_at", "not_before",
                     "claim_token", "result"):
            setattr(job, name, getattr(stored, name))
        if stored.status in (QUEUED, RETRYING) and stored.claimed_by is None:
            job.claimed_by = None
        return job

    def reap(self, lease_seconds: float, alive: Callable[[str], bool] | None = None) -> int:
        now = self.clock()
        reaped = 0
        dead: list[Job] = []
        with _reachable():
            claimed = self.redis.zrange(self._keys[1], 0, -1, withscores=True)
        for raw_id, beat in claimed:
            job_id = _text(raw_id)
            with _reachable():
                fields = self.redis.hmget(self._key(job_id), "claimed_by", "claim_token")
            by, token = _text(fields[0]), _text(fields[1])
            dead_claimer = alive is not None and bool(by) and not alive(by)
            if not (now - beat > lease_seconds or dead_claimer):
                continue
            outcome = self._run("reap_one", job_id, token, repr(now), repr(lease_seconds),
                                "1" if dead_claimer else "0",
                                "the job's process died or stopped heartbeating (lease expired)")
            if outcome in ("dead", "retrying"):
                reaped += 1
                if outcome == "dead":
                    dead.append(self.get(job_id))
        self._reaped_dead(dead)
        return reaped

    def prune_done(self, older_than: float = DONE_RETENTION_SECONDS) -> int:
        return int(self._run("prune_done", repr(self.clock() - older_than)))

    def _key(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}"

    def get(self, job_id: str) -> Job:
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        with _reachable():
            raw = self.redis.hgetall(self._key(job_id))
        if not raw:
            raise JobNotFound(job_id)
        f = {_text(k): _text(v) for k, v in raw.items()}
        data = json.loads(f["data"])
        attempts = int(f["attempts"])
        state = f["state"]
        status = {"pending": RETRYING if attempts > 0 else QUEUED, "claimed": RUNNING, "done": DONE,
                  "dead": DEAD}[state]
        not_before = float(f["not_before"])  # the enqueue time unless delayed or retried
        return Job(id=job_id, type=data["type"], content_hash=data["content_hash"], variant=data["variant"],
                   priority=data["priority"], status=status, attempts=attempts,
                   max_attempts=int(f["max_attempts"]), last_error=f["last_error"] or None,
                   created_at=float(data["created_at"]), updated_at=float(f["updated_at"]),
                   not_before=not_before if attempts or not_before > float(data["created_at"]) else 0.0,
                   claimed_by=f["claimed_by"] or None, claim_token=f["claim_token"] or None,
                   payload=data["payload"], result=json.loads(f["result"]) if f["result"] else None)

    def find(self, type: str, content_hash: str, variant: str = "") -> Job | None:
        key = Job(id="", type=type, content_hash=content_hash, variant=variant).key
        with _reachable():
            job_id = _text(self.redis.hget(self._keys[4], key))
        if not job_id:
            return None
        try:
            job = self.get(job_id)
        except JobNotFound:
            return None
        return job if job.status in (QUEUED, RETRYING, RUNNING) else None

    def pending_count(self) -> int:
        with _reachable():
            return int(self.redis.zcard(self._keys[0]))

    def stats(self) -> dict[str, int]:
        pending, retrying, claimed, done, dead = self._run("stats")
        return {QUEUED: pending - retrying, RUNNING: claimed, RETRYING: retrying, DONE: done, DEAD: dead}


@contextmanager
def _reachable() -> Iterator[None]:
    """Redis not answering (down, unreachable, timed out) as the queue's QueueUnavailable."""
    import redis

    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise QueueUnavailable(f"Redis does not answer: {exc}") from exc


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


__all__ = ["RedisQueue", "is_job_id"]
