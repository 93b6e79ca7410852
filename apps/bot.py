"""The bot API's domain side: what an app may do, done as its bot identity (docs/apps.md).

Why through the bot identity: notices, tasks and messages an app sends go
through exactly the paths people's do (jurisdiction checks, idempotency by
``client_msg_id``, DING, progress, the outbox), with the bot person as sender
and the bot position — role ``app_bot`` in the subtree's root unit, rule
``subtree`` — as the position it acts as. So the app's jurisdiction is its
subtree by construction, and nothing here re-implements those rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from apps.model import AppPrincipal, Scope
from kernel.errors import NotFound
from messaging.attachments.links import UPLOADER
from messaging.conversations.model import PostRequest
from messaging.conversations.service import ConversationService
from messaging.notices.model import Compose
from messaging.notices.service import NoticeService
from messaging.tasks.lifecycle import CLIENT_ACTIONS, Action
from messaging.tasks.model import CreatedTasks
from messaging.tasks.reports import ReportService
from messaging.tasks.service import TaskService
from org_tree.grants import Grant, Perm
from org_tree.index import OrgIndex
from org_tree.jurisdiction import Actor
from org_tree.org_service import OrgService
from org_tree.selectors import Selector

__all__ = ["BotService"]


@dataclass(frozen=True, slots=True)
class BotService:
    """The people's services, called as the app's bot identity (it keeps no state of its own)."""

    notices: NoticeService
    tasks: TaskService
    reports: ReportService
    conversations: ConversationService
    org: OrgService
    index: Callable[[], OrgIndex]

    @staticmethod
    def actor(p: AppPrincipal) -> Actor:
        """The bot identity as the org tree sees it (its position's reading scope is the subtree)."""
        return Actor(p.app.bot_person_id, (p.app.bot_position_id,))

    @staticmethod
    def _overseer(p: AppPrincipal) -> Actor:
        """Reads of tasks in the subtree: an ``audit`` view limited to the subtree, nothing more."""
        grant = Grant(0, p.app.bot_person_id, p.app.subtree_unit_id, frozenset({Perm.AUDIT.value}))
        return Actor(p.app.bot_person_id, (p.app.bot_position_id,), (grant,))

    def in_subtree(self, p: AppPrincipal, unit_id: int) -> bool:
        idx = self.index()
        try:
            return idx.contains(idx.unit(p.app.subtree_unit_id), idx.unit(unit_id))
        except NotFound:
            return False

    # ------------------------------------------------------------ notices
    def preview(self, p: AppPrincipal, selector: Selector) -> dict[str, Any]:
        return asdict(self.notices.preview(p.app.bot_person_id, p.app.bot_position_id, selector))

    async def send_notice(self, p: AppPrincipal, compose: Compose) -> tuple[int, dict[str, Any]]:
        res = await self.notices.send(p.app.bot_person_id, p.app.bot_position_id, compose)
        return (200 if res.duplicate else 201), res.to_dict()

    async def notice(self, p: AppPrincipal, notice_id: int) -> dict[str, Any]:
        """One of the app's own notices with its progress (others: 404).

        ``progress`` is the whole notice's live count (``…/progress``' ``notice_total``): the organiser's
        number, which docs/apps.md promises here and the SDK's ``notice()`` returns.
        """
        view = await self.notices.get(p.app.bot_person_id, notice_id)
        progress = await self.notices.progress(p.app.bot_person_id, notice_id)
        return {**view, "progress": progress.notice_total.to_dict()}

    async def progress(self, p: AppPrincipal, notice_id: int) -> Any:
        """The live roll-up of one of the app's own notices (the organiser's count)."""
        return await self.notices.progress(p.app.bot_person_id, notice_id)

    async def check_in(
        self, p: AppPrincipal, notice_id: int, person_id: int, position_id: int | None, reply: str | None
    ) -> dict[str, Any]:
        """Acknowledge the app's own notice for an attendee (a check-in device, 刷脸入场).

        Only notices the app sent: another sender's notice answers 404 before
        anything is written. The person must be a recipient (404 otherwise).
        """
        await self.notices.get(p.app.bot_person_id, notice_id)
        states = await self.notices.acknowledge(person_id, notice_id, position_id=position_id, reply=reply)
        return {"notice_id": notice_id, "person_id": person_id, "receipts": [s.to_dict() for s in states]}

    # -------------------------------------------------------------- tasks
    async def create_tasks(
        self,
        p: AppPrincipal,
        *,
        selector: Selector,
        shared: bool,
        category: str,
        title: str,
        body: str,
        key: str,
        due_at: datetime | None = None,
    ) -> CreatedTasks:
        """Tasks from the app's bot position; ``due_at`` as a person's create takes it (its resolve deadline)."""
        return await self.tasks.create(
            p.app.bot_person_id, p.app.bot_position_id, selector=selector, shared=shared, category=category,
            title=title, body=body, client_msg_id=key, due_at=due_at,
        )  # fmt: skip

    async def act(
        self,
        p: AppPrincipal,
        task_id: int,
        action: str,
        version: int,
        *,
        comment: str = "",
        to_position: int | None = None,
        attachments: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Act on a task the app created or that was handed to its position — or, as the platform
        handling cases for its subtree's offices, on the owner's side of a task owned there
        (a river-chief platform accepts and resolves the river chief's report tasks).

        The owner's side is taken only for a task whose owner position lies in the subtree;
        the transition records the app's bot person as the actor, acting for that position.
        """
        act = Action(action)
        assert act in CLIENT_ACTIONS
        as_position = p.app.bot_position_id
        delegate_of: int | None = None
        seen = await self.tasks.get(p.app.bot_person_id, task_id, overseer=self._overseer(p))
        mine = {seen["owner_position_id"], seen["creator"]["position_id"]}
        if p.app.bot_position_id not in mine:
            idx = self.index()
            as_position, delegate_of = int(seen["owner_position_id"]), idx.unit(p.app.subtree_unit_id)
        t = await self.tasks.act(
            p.app.bot_person_id, as_position, task_id, act, version,
            comment=comment, attachments=attachments, to_position=to_position, delegate_of=delegate_of,
        )  # fmt: skip
        return t.summary()

    async def task(self, p: AppPrincipal, task_id: int) -> dict[str, Any]:
        """A task the app is involved in, or whose owner position lies in its subtree."""
        return await self.tasks.get(p.app.bot_person_id, task_id, overseer=self._overseer(p))

    async def report(self, p: AppPrincipal, report_id: int) -> dict[str, Any]:
        return await self.reports.get_within(report_id, lambda unit_id: self.in_subtree(p, unit_id))

    async def may_read_file(self, p: AppPrincipal, links: Sequence[tuple[str, int]]) -> bool:
        """Whether the app may download a file used by ``links``: one it uploaded itself, a photo of a
        report filed in its subtree (with ``report:read``), or an attachment of a task event its bot
        person may see (a task it created or was handed)."""
        if (UPLOADER, p.app.bot_person_id) in links:
            return True
        for kind, ref in links:
            if kind == "report" and Scope.REPORT_READ.value in p.app.scopes:
                try:
                    await self.report(p, ref)
                except NotFound:
                    continue
                return True
            if kind == "task_event" and await self.tasks.can_see_task_event(p.app.bot_person_id, ref):
                return True
        return False

    # ------------------------------------------------------ conversations
    async def post(self, p: AppPrincipal, conversation_id: int, body: str, key: str) -> tuple[int, dict[str, Any]]:
        """Post into a conversation the app's bot was added to (404 otherwise), labelled with the app."""
        res = await self.conversations.post(
            PostRequest(sender_id=p.app.bot_person_id, client_msg_id=key, body=body, conversation_id=conversation_id)
        )
        out = res.to_dict()
        out["app"] = {"id": p.app.id, "name": p.app.name}
        return (200 if res.duplicate else 201), out

    # ----------------------------------------------------------------- org
    def unit(self, p: AppPrincipal, unit: int | str) -> dict[str, Any]:
        """A unit of the app's subtree (outside: 404 like an unknown unit)."""
        idx = self.index()
        u = idx.unit(unit)
        if not self.in_subtree(p, idx.unit_id(u)):
            raise NotFound("no such unit", data={"unit": unit})
        view = asdict(self.org.get_unit(self.actor(p), idx.unit_id(u)))
        view["children_list"] = [asdict(c) for c in self.org.list_children(self.actor(p), idx.unit_id(u), limit=200)]
        return view
