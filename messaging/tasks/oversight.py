"""Who oversees a task from above: a subtree's reach, an auditor's grant, and the audit entry of tasks sent.

Kept apart from the task service: these read only the org index and a task row, and decide
nothing about a task's lifecycle.
"""

from __future__ import annotations

from typing import Any

from kernel.audit import AuditEntry
from kernel.errors import NotFound
from messaging.tasks.model import TaskRow
from org_tree.grants import Perm, holds_grant, unit_path_of
from org_tree.index import OrgIndex
from org_tree.jurisdiction import Actor

__all__ = ["audits_task", "owned_within", "task_audit"]


def owned_within(index: OrgIndex, t: TaskRow, top: int) -> bool:
    """Whether the task's owner position sits in the subtree of pre-order unit ``top``."""
    k = index.find_slot(t.owner_position_id)
    return k >= 0 and index.contains(top, index.position_unit(k))


def audits_task(index: OrgIndex, overseer: Actor | None, t: TaskRow) -> bool:
    """An administrator with ``audit`` over the owner position's unit reads any task there."""
    if overseer is None or not overseer.grants:
        return False
    try:
        u = index.position_unit(index.slot(t.owner_position_id))
    except NotFound:
        return False
    return holds_grant(index, overseer, Perm.AUDIT, u)


def task_audit(
    index: OrgIndex, base: dict[str, Any], position_id: int, made: list[TaskRow], selector: str | None
) -> AuditEntry:
    """The audit entry of tasks sent: who, as which position, to what, how many (issue 10 item 7)."""
    try:
        unit_id, path = unit_path_of(index, index.position_unit(index.slot(position_id)))
    except NotFound:
        unit_id, path = None, None
    detail = {
        "category": base["category"], "source": base["source"], "selector": selector,
        "audience": len(made), "task_ids": [t.id for t in made[:50]],
    }  # fmt: skip
    return AuditEntry("task.created", int(base["creator_person_id"]), position_id, "ok", unit_id, path, detail)
