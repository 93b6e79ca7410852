"""Answers of ``/api/v1/auth`` and ``/api/v1/me``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, RootModel

from zzd.http.contract import WireModel

__all__ = ["AppToken", "Me", "TokenAnswer", "Tokens"]


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
