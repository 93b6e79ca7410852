"""Schema migrations from code (``zzd migrate``, ``zzd serve``, tests)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations

logger = logging.getLogger(__name__)

__all__ = ["alembic_config", "upgrade"]


def alembic_config(url: str, *, audit_key: bytes | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.attributes["url"] = url
    # Revision 0019 re-seals an existing audit log under this key (migrations/versions/0019_audit_key.py).
    cfg.attributes["audit_key"] = audit_key
    return cfg


def upgrade(url: str, revision: str = "head", *, audit_key: bytes | None = None) -> None:
    """Bring the database at ``url`` to ``revision`` (blocking; runs its own event loop).

    ``audit_key``: needed only when a revision re-seals audit entries already sealed (0019).
    """
    command.upgrade(alembic_config(url, audit_key=audit_key), revision)
