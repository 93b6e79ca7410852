"""The direct chat's ``message.new`` payload, written from a template, is exactly the model's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from messaging.chat import _PAYLOAD_HEAD, SendRequest, direct_message_tail, direct_message_text
from messaging.shapes import MessageNew, Sender


@pytest.mark.parametrize(
    ("body", "name", "at"),
    [
        ("hello", "Bench 1", datetime(2026, 12, 2, 8, 30, 0, 123456, tzinfo=UTC)),
        ("", "王小明", datetime(2026, 1, 1, tzinfo=UTC)),
        ('quote " and \\ and 网格\n', "x" * 100, datetime(2026, 6, 30, 23, 59, 59, 999999)),
    ],
)
def test_direct_payload_equals_the_models_text(body: str, name: str, at: datetime) -> None:
    req = SendRequest(sender_id=7, recipient_id=9, client_msg_id="dev:42", body=body)
    model = MessageNew(
        id=1234,
        conversation_id=55,
        conversation_kind="direct",
        sender=Sender(id=7, name=name),
        recipient_id=9,
        client_msg_id="dev:42",
        body=body,
        created_at=at,
    )
    assert direct_message_text(1234, 55, req, name, at) == model.text()
    # PostgreSQL writes the payload as head, id, tail in SQL (``ChatStore.store_messages``).
    assert _PAYLOAD_HEAD + "1234" + direct_message_tail(55, req, name, at) == model.text()


def test_messages_do_not_share_their_sender() -> None:
    at = datetime(2026, 12, 2, tzinfo=UTC)
    first = direct_message_text(1, 1, SendRequest(1, 2, "a", "x"), "one", at)
    second = direct_message_text(2, 1, SendRequest(3, 4, "b", "y"), "three", at)
    assert '"sender":{"id":1,"name":"one"' in first
    assert '"sender":{"id":3,"name":"three"' in second


def test_a_send_answer_goes_out_as_the_model_would_write_it() -> None:
    from messaging.chat import SendResult
    from zzd.gateway.frames import Send
    from zzd.gateway.replies import shape
    from zzd.http.schemas.chat import Posted

    frame = Send(type="send", id="s1", to=2, client_msg_id="c1", body="hi")
    at = datetime(2026, 12, 2, 8, 30, 0, 123456, tzinfo=UTC)
    for result in (SendResult(5, 6, at, False, 11), SendResult(5, 6, at.replace(tzinfo=None), True, None)):
        data = result.to_dict()
        assert shape(frame, data) == Posted.model_validate(data).model_dump(mode="json", exclude_unset=True)


def test_a_send_answer_with_a_field_the_model_does_not_name_is_refused() -> None:
    from pydantic import ValidationError

    from zzd.gateway.frames import Send
    from zzd.gateway.replies import shape

    frame = Send(type="send", id="s1", to=2, client_msg_id="c1", body="hi")
    data = {"message_id": 1, "conversation_id": 2, "created_at": "2026-12-02T08:30:00Z", "duplicate": False, "seq": 3}
    with pytest.raises(ValidationError):
        shape(frame, {**data, "secret": "x"})
    with pytest.raises(ValidationError):
        shape(frame, {k: v for k, v in data.items() if k != "seq"})
