"""Answers of ``/api/v1/apps`` (administrators) and ``/api/v1/bot`` (apps themselves)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from zzd.http.contract import WireModel
from zzd.http.schemas.chat import Posted
from zzd.http.schemas.notices import NoticeView, Receipt, Totals
from zzd.http.schemas.org import UnitView

__all__ = [
    "AppList",
    "Workbench",
    "AppView",
    "AppWithSecret",
    "AppWithSecrets",
    "BotMe",
    "BotPosted",
    "BotUnit",
    "CheckedIn",
    "NewSecret",
    "SecretRevoked",
]


class AppView(WireModel):
    id: int
    name: str
    client_id: str
    owning_unit_id: int
    owner_position_id: int | None
    subtree_unit_id: int
    visibility: dict[str, Any] | str = Field(description="selector of the positions that see the app")
    scopes: list[str]
    rate_per_minute: int
    bot_person_id: int | None
    bot_position_id: int | None
    disabled: bool
    created_at: datetime


class AppWithSecret(AppView):
    client_secret: str = Field(description="shown this once")
    secret_id: int


class SecretHint(WireModel):
    secret_id: int
    hint: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool


class AppWithSecrets(AppView):
    secrets: list[SecretHint]


class AppList(WireModel):
    apps: list[AppView]


class NewSecret(WireModel):
    secret_id: int
    client_secret: str = Field(description="shown this once")
    previous_secrets_expire_at: datetime | None


class SecretRevoked(WireModel):
    secret_id: int
    revoked: bool


class BotMe(AppView):
    subtree_path: list[str]


class AppRef(WireModel):
    id: int
    name: str


class BotPosted(Posted):
    app: AppRef = Field(description="the app the bot message is labelled with")


class BotNoticeView(NoticeView):
    """One of the app's own notices as its sender sees it, with its live count."""

    progress: Totals = Field(description="the whole notice's count (as notice_total of …/progress)")


class CheckedIn(WireModel):
    notice_id: int
    person_id: int
    receipts: list[Receipt]


class BotUnit(UnitView):
    children_list: list[UnitView] = Field(description="the first 200 child units")


class WorkbenchApp(WireModel):
    id: int
    name: str
    owning_unit_id: int


class Workbench(WireModel):
    apps: list[WorkbenchApp]
