"""Job queues: the JobQueue interface and its backends (chosen by QUEUE_BACKEND in
falconproc/wiring.py, which also wires the dead-letter callback)."""
from __future__ import annotations

from falconproc.queue.base import (DEAD, DONE, JOB_STATES, QUEUED, REQUEST_ID_KEY, RETRYING, RUNNING, ClaimLost, Job,
                                   JobNotFound, JobQueue, QueueFull, QueueUnavailable)

__all__ = ["DEAD", "DONE", "JOB_STATES", "QUEUED", "REQUEST_ID_KEY", "RETRYING", "RUNNING", "ClaimLost", "Job",
           "JobNotFound", "JobQueue", "QueueFull", "QueueUnavailable"]
