"""The audit chain becomes keyed: HMAC-SHA-256 under a key kept outside the database.

With plain SHA-256, whoever could write the database could edit an entry and
recompute every hash after it and the head, and ``zzd audit verify`` accepted
the result. Now every hash is an HMAC under the audit key (``ZZD_AUDIT_KEY``,
``ZZD_AUDIT_KEY_FILE`` or the generated ``zzd-audit.key``), which ``zzd
migrate`` / ``zzd serve`` hand to this revision.

``audit_head.key_check`` (an HMAC of a fixed text under the key) lets a process
holding another key refuse to seal instead of writing hashes nobody can check.

An existing chain is **re-sealed** here, in one transaction: each sealed entry
keeps its position and fields and gets its ``prev_hash``/``hash`` recomputed
under the key, so afterwards no entry of the log is hashed any other way. (Keeping
the old part on SHA-256 would need a boundary recorded in the database, and a
database writer could move it.) The old chain is checked first and what was
found goes into an ``audit.rekeyed`` entry, sealed by the first sealer after the
upgrade: re-sealing must not quietly launder an edit made before it. A gap (a
deleted entry) stays a gap, and a head that disagrees with the rows stays so.

Stop every server of the previous version first: one still sealing after this
commit would append SHA-256 hashes, which verify reports as a break there.
No application imports (kernel only, for the hash's field list).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from kernel.audit import entry_payload, key_check
from kernel.db.base import UTCDateTime

revision = "0019_audit_key"
down_revision = "0018_notice_unfilled"

_log = sa.table(
    "audit_log",
    sa.column("id", sa.BigInteger()),
    sa.column("at", UTCDateTime()),
    sa.column("actor_person_id", sa.BigInteger()),
    sa.column("acting_position_id", sa.BigInteger()),
    sa.column("action", sa.String()),
    sa.column("outcome", sa.String()),
    sa.column("unit_id", sa.BigInteger()),
    sa.column("unit_path", sa.String()),
    sa.column("detail", sa.Text()),
    sa.column("seq", sa.BigInteger()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)
_head = sa.table(
    "audit_head",
    sa.column("id", sa.Integer()),
    sa.column("last_seq", sa.BigInteger()),
    sa.column("last_hash", sa.String()),
    sa.column("pruned_through_seq", sa.BigInteger()),
    sa.column("pruned_through_hash", sa.String()),
    sa.column("key_check", sa.String()),
)
_BATCH = 2000


def upgrade() -> None:
    conn = op.get_bind()
    # Checked before any DDL: SQLite commits an ALTER TABLE at once, so a refusal after it would leave it done.
    head = conn.execute(sa.select(*[c for c in _head.c if c.name != "key_check"]).where(_head.c.id == 1)
                        .with_for_update()).first()  # fmt: skip
    sealed = conn.execute(sa.select(sa.func.count()).where(_log.c.seq.is_not(None))).scalar_one()
    key = context.config.attributes.get("audit_key")
    if head is not None and sealed and not key:
        raise RuntimeError(
            f"revision 0019 re-seals the {sealed} sealed audit entries with the audit key: run it with "
            "`zzd migrate` (which reads ZZD_AUDIT_KEY, ZZD_AUDIT_KEY_FILE or the generated zzd-audit.key)"
        )
    op.add_column("audit_head", sa.Column("key_check", sa.String(64), nullable=True))
    if head is None or not sealed:
        return  # nothing sealed yet: the first sealer records its key's check
    expect_seq, old_prev = int(head.pruned_through_seq) + 1, str(head.pruned_through_hash)
    new_prev = old_prev  # the anchor stays: the first kept entry's keyed hash covers it
    problem: str | None = None
    count, after = 0, 0
    while True:
        rows = conn.execute(
            sa.select(_log).where(_log.c.seq.is_not(None), _log.c.seq > after).order_by(_log.c.seq).limit(_BATCH)
        ).all()
        params: list[dict[str, Any]] = []
        for r in rows:
            m = dict(r._mapping)
            if problem is None:
                if int(m["seq"]) != expect_seq:
                    problem = f"entry {expect_seq} was missing"
                elif m["prev_hash"] != old_prev or hashlib.sha256(entry_payload(m)).hexdigest() != m["hash"]:
                    problem = f"entry {m['seq']} (id {m['id']}) had been changed"
            expect_seq, old_prev = int(m["seq"]) + 1, m["hash"]
            m["prev_hash"] = new_prev
            new_prev = hmac.new(key, entry_payload(m), hashlib.sha256).hexdigest()
            params.append({"b_id": m["id"], "b_prev": m["prev_hash"], "b_hash": new_prev})
            after = int(m["seq"])
        if params:
            conn.execute(
                sa.update(_log).where(_log.c.id == sa.bindparam("b_id"))
                .values(prev_hash=sa.bindparam("b_prev"), hash=sa.bindparam("b_hash")),
                params,
            )  # fmt: skip
            count += len(params)
        if len(rows) < _BATCH:
            break
    if problem is None and (int(head.last_seq) != after or head.last_hash != old_prev):
        problem = f"the head named {head.last_seq} but the log ended at {after}"
    head_hash = new_prev if int(head.last_seq) == after else head.last_hash
    conn.execute(sa.update(_head).where(_head.c.id == 1).values(last_hash=head_hash, key_check=key_check(key)))
    detail = {"resealed": count, "through_seq": after, "algorithm": "HMAC-SHA-256", "problem_before": problem}
    conn.execute(
        sa.insert(_log).values(
            at=datetime.now(UTC), action="audit.rekeyed", outcome="ok" if problem is None else "failed",
            detail=json.dumps(detail, sort_keys=True, ensure_ascii=False, separators=(",", ":")),
        )
    )  # fmt: skip


def downgrade() -> None:
    # The hashes stay keyed: the previous version's verify would call every entry changed. For a real
    # rollback restore a backup; this is for going back and forth in development and tests.
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("key_check")
