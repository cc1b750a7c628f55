"""The life of a task (Vtrix, WaveSpeed): created, running, then completed or failed.

The create/submit answer is never finished (except some faults and WaveSpeed's sync mode). The k-th
poll finishes a task when k >= ``polls_until_done`` (0 counts as 1) and ``latency`` seconds have
passed since creation. An outcome fault armed for the submit decides the task's fate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from tests.emulator.faults import Fault

State = Literal["running", "completed", "failed", "cancelled", "timeout", "deleted"]
Fate = Literal["ok", "refused", "failed", "never", "cancelled", "timeout", "deleted"]
END_STATES = ("cancelled", "timeout", "deleted")  # WaveSpeed's other ways for a task to end
_SHOWN: dict[str, State] = {
    "ok": "completed",
    "refused": "failed",
    "failed": "failed",
    "never": "running",
    "cancelled": "cancelled",
    "timeout": "timeout",
    "deleted": "deleted",
}


@dataclass
class Task:
    provider: str
    id: str
    model: str
    created: float  # monotonic
    created_at: Any  # as the provider shows it
    outputs: list[str]
    fate: Fate = "ok"
    error_code: Any = None
    error_message: str = ""
    error_style: str = "object"  # vtrix: "object" | "string" | "error_message"
    vocab: int = 0  # vtrix: 0 = pending/processing, 1 = in_progress
    cost: str = ""
    nsfw: bool = False
    polls: int = 0
    done: bool = False  # finished without waiting for polls (sync mode, completed_on_create, sync_504)
    finished: float | None = None


def apply_fate(task: Task, fault: Fault | None, refused: tuple[Any, str], failed: tuple[Any, str]) -> None:
    """Let an outcome fault decide how ``task`` ends; ``refused``/``failed``: (code, message)."""
    if fault is None:
        return
    opts = fault.options
    if fault.kind == "content_refused":
        task.fate, task.error_code = "refused", refused[0]
        task.error_message = opts.get("message", refused[1])
    elif fault.kind == "task_failed":
        task.fate, task.error_code = "failed", opts.get("code", failed[0])
        task.error_message = opts.get("message", failed[1])
    elif fault.kind == "never_finish":
        task.fate = "never"
    elif fault.kind == "end_state":
        task.fate = opts["status"]
        task.error_message = opts.get("message", "")


def state_of(task: Task, latency: float, polls_until_done: int) -> State:
    """Where ``task`` is now; finishing it (once) when its polls and its time are up."""
    if task.finished is None and task.fate != "never":
        waited = time.monotonic() - task.created >= latency
        if task.done or (task.polls >= max(1, polls_until_done) and waited):
            task.finished = time.monotonic()
    if task.finished is None:
        return "running"
    return _SHOWN[task.fate]
