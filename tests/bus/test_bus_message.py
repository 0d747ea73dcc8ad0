"""services.bus.message: subjects with instance placeholders, the msgpack codec, ULIDs."""

from __future__ import annotations

import time

import msgspec
import pytest

from services.bus.message import Message, check_token, decode, encode, new_ulid


class PerInstance(Message):
    subject = "subspace.controller.*.solution"
    value: int


class Plain(Message):
    subject = "subspace.controller.slot-info"
    slot_number: int
    blob: bytes = b""


class NoSubject(Message):
    x: int = 0


def test_instance_replaces_placeholder():
    assert PerInstance.subject_for("ctl-1") == "subspace.controller.ctl-1.solution"
    assert PerInstance.subscription_subject("ctl-1") == "subspace.controller.ctl-1.solution"


def test_no_instance_subscribes_to_wildcard_but_cannot_publish():
    assert PerInstance.subscription_subject() == "subspace.controller.*.solution"
    with pytest.raises(ValueError, match="needs an instance"):
        PerInstance.subject_for(None)


def test_instance_on_subject_without_placeholder_is_rejected():
    assert Plain.subject_for() == "subspace.controller.slot-info"
    with pytest.raises(ValueError, match="no '\\*'"):
        Plain.subject_for("x")


@pytest.mark.parametrize("bad", ["", "a.b", "a*", ">", "a b"])
def test_bad_instance_tokens(bad):
    with pytest.raises(ValueError, match="invalid NATS subject token"):
        check_token(bad)
    with pytest.raises(ValueError):
        PerInstance.subject_for(bad)


def test_missing_subject_is_an_error():
    with pytest.raises(ValueError, match="has no subject"):
        NoSubject.subject_for()


def test_class_vars_are_not_fields():
    assert Plain.__struct_fields__ == ("slot_number", "blob")
    assert Plain.response is None and Plain.stream is False


def test_codec_round_trip_and_validation():
    msg = Plain(slot_number=7, blob=bytes(range(256)))
    assert decode(encode(msg), Plain) == msg
    with pytest.raises(msgspec.ValidationError):
        decode(encode({"slot_number": "seven"}), Plain)


def test_ulid_form_and_order():
    a = new_ulid()
    time.sleep(0.002)
    b = new_ulid()
    assert len(a) == 26 and set(a) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert a[0] in "01234567"  # 128 bits in 130: the first character carries 3 bits
    assert a[:10] < b[:10]  # the timestamp prefix sorts by time
    assert a != b
