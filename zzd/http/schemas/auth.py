"""Answers of ``/api/v1/auth`` and ``/api/v1/me``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, RootModel

from zzd.http.contract import WireModel

__all__ = ["AppToken", "Me", "SessionList", "SessionView", "TokenAnswer", "Tokens"]


class TokenAnswer(WireModel):
    """A signed-in session: a short-lived access token and the refresh token that renews it."""

    access_token: str = Field(description="JWT for Authorization: Bearer (REST) and hello (WebSocket)")
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="seconds the access token is valid")
    refresh_token: str = Field(description="one use: POST /api/v1/auth/token with grant_type=refresh_token")
    person_id: int


class AppToken(WireModel):
    """An app's access token (client credentials): no refresh token; ask again when it expires."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str = Field(description="the app's scopes, space-separated")
    app_id: int


class Tokens(RootModel[TokenAnswer | AppToken]):
    """A person's tokens (password, refresh_token) or an app's (client_credentials)."""


class Me(WireModel):
    #: the person's id (person_id elsewhere)
    id: int
    #: their login
    login: str
    #: their name
    name: str
    epoch: str = Field(description="event-stream epoch (GET /api/v1/sync)")
    last_seq: int = Field(description="the last event sequence number written for this person")


class SessionView(WireModel):
    """One sign-in that still works (a device): what its owner needs to recognise it and sign it out."""

    id: str = Field(description="the session's id for DELETE /api/v1/auth/sessions/{session}; not a credential")
    created_at: datetime = Field(description="when the person signed in")
    last_refreshed_at: datetime = Field(
        description="when the device last used the session to sign in or renew its tokens (created_at if never): "
        "its last use, to within one access token's lifetime"
    )
    expires_at: datetime = Field(description="when the session ends (renewals do not move it): sign in again after it")
    client_label: str | None = Field(
        description="how the device named itself at sign-in or its last renewal (the token request's client_label, "
        "else its User-Agent), cleaned, at most 100 characters; null if it sent neither"
    )
    current: bool = Field(description="true for the session of the token this request was sent with")


class SessionList(WireModel):
    #: the caller's sessions that still work (not signed out, not expired), newest first
    sessions: list[SessionView]
