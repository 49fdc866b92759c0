"""The SMPP transport's pure core (issue 24): a request's submit_sm fields, and delivery receipts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay import provider_errors
from relay.errors import ContentError
from relay.formatters import segments, smpp
from relay.model import Encoding, Entry, Inbound, Options
from relay.parsers import receipt
from relay.parsers.command import Command


def command(text: str, *phones: str, sender: str = "ALERTS", translit: str = "") -> Command:
    return Command(
        "login", "***", "r19a3f0c2b1d-5e0f2a9c", Options(sender=sender, translit=translit),
        (Entry(phones or ("+79991234567",), text),), list_form=False,
    )  # fmt: skip


def reassemble(parts: list[smpp.Submit]) -> str:
    """What a handset shows: the parts' text, their UDH taken off, decoded by data_coding."""
    body = b"".join(p.short_message[6:] if p.esm_class & smpp.ESM_UDHI else p.short_message for p in parts)
    return body.decode("gsm03.38" if parts[0].data_coding == 0 else "utf-16-be")


# ---- the GSM 03.38 codec and the relay's own counting agree ----------------------------------
def test_the_codec_knows_exactly_the_characters_the_relay_counts_as_gsm() -> None:
    for ch in segments.GSM_BASIC:
        assert len(ch.encode("gsm03.38")) == 1, repr(ch)
    for ch in segments.GSM_EXTENSION:
        assert ch.encode("gsm03.38")[:1] == b"\x1b" and len(ch.encode("gsm03.38")) == 2, repr(ch)
    for ch in "`жé😀\t\x01ÀÂ":
        if ch not in segments.GSM_ALL:
            with pytest.raises(UnicodeEncodeError):
                ch.encode("gsm03.38")


ALPHABET = [*"aZ0 .\n@$", *"^{}\\[~]|€", "ж", "é", "😀"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(ALPHABET), max_size=700))
def test_parts_are_the_parts_the_relay_counts_and_give_the_text_back(text: str) -> None:
    encoding = segments.encoding_for(text)
    chunks = smpp.split(text, encoding)
    assert "".join(chunks) == text
    assert len(chunks) == max(1, segments.count(text).parts)
    if len(chunks) > 1:
        unit = 1 if encoding is Encoding.GSM7 else 2
        for chunk in chunks:  # a part never splits an escape or a surrogate pair: it encodes whole
            assert len(smpp.encode(chunk, encoding)) <= smpp.MULTI[encoding] * unit
    parts = list(smpp.submits(command(text)))
    assert reassemble(parts) == text
    assert [p.part for p in parts] == list(range(1, len(parts) + 1))


def test_one_short_gsm_text_is_one_plain_submit() -> None:
    (s,) = smpp.submits(command("disk /var 95% full on db1"))
    assert (s.data_coding, s.esm_class, s.parts) == (0x00, 0x00, 1)
    assert s.short_message == b"disk /var 95% full on db1"
    assert s.source == smpp.Address(5, 0, "ALERTS") and s.destination == smpp.Address(1, 1, "79991234567")


def test_a_long_text_to_two_phones_is_concatenated_with_one_reference_a_phone() -> None:
    parts = smpp.submits(command("€ " * 110, "+79990000001", "+79990000002"))  # 330 septets: 3 parts
    assert [(p.destination.value, p.part, p.parts) for p in parts] == [
        (phone, n, 3) for phone in ("79990000001", "79990000002") for n in (1, 2, 3)
    ]
    for p in parts:
        assert p.esm_class == smpp.ESM_UDHI and p.data_coding == 0x00
        assert p.short_message[:3] == bytes((5, 0, 3)) and p.short_message[4:6] == bytes((3, p.part))
        assert len(p.short_message) - 6 <= 153  # octets of unpacked septets, escapes included
    refs = {
        p.destination.value: {q.short_message[3] for q in parts if q.destination == p.destination}
        for p in parts
    }
    assert all(len(r) == 1 for r in refs.values())
    assert reassemble(list(parts[:3])) == "€ " * 110
    assert parts == smpp.submits(command("€ " * 110, "+79990000001", "+79990000002"))  # a resend joins


def test_cyrillic_is_ucs2_in_parts_of_67() -> None:
    parts = smpp.submits(command("Диск заполнен " * 10))  # 140 units: 3 parts
    assert {p.data_coding for p in parts} == {0x08} and len(parts) == 3
    assert all(len(p.short_message) - 6 <= 134 for p in parts)
    assert reassemble(list(parts)) == "Диск заполнен " * 10


def test_translit_and_a_numeric_sender() -> None:
    (s,) = smpp.submits(command("Привет", sender="+79990000000", translit="1"))
    assert s.data_coding == 0x00 and s.short_message == b"Privet"
    assert s.source == smpp.Address(1, 1, "79990000000")


def test_a_text_over_255_parts_is_refused_with_a_reason() -> None:
    with pytest.raises(ContentError, match="255"):
        smpp.submits(command("x" * 153 * 256))


# ---- delivery receipts -------------------------------------------------------------------------
STANDARD = b"id:1234567890 sub:001 dlvrd:001 submit date:2612041530 done date:2612041531 stat:DELIVRD err:000 text:disk /var 95%"


def test_the_standard_receipt() -> None:
    got = receipt.parse(STANDARD)
    assert got is not None
    assert (got.message_id, got.stat, got.error) == ("1234567890", receipt.Stat.DELIVERED, "000")
    assert got.submitted is not None and got.submitted.isoformat() == "2026-12-04T15:30:00+00:00"
    assert got.done is not None and got.done.minute == 31
    assert got.stat.final and got.stat.delivered


@pytest.mark.parametrize(
    ("raw", "stat"),
    [
        (b"id:A1 stat:UNDELIV err:012", receipt.Stat.UNDELIVERABLE),
        (b"ID:A1 SUB:001 DLVRD:000 SUBMIT DATE:261204153011 DONE DATE:261204153512 STAT:EXPIRED ERR:000", receipt.Stat.EXPIRED),
        (b"id:A1 sub:001 dlvrd:000 stat:ACCEPTD err:000 text:", receipt.Stat.ACCEPTED),
        (b"id:A1 stat:REJECTD err:007 text:id:Z9 stat:DELIVRD", receipt.Stat.REJECTED),  # the text is not read as fields
    ],
)  # fmt: skip
def test_receipts_as_smscs_write_them(raw: bytes, stat: receipt.Stat) -> None:
    got = receipt.parse(raw)
    assert got is not None and (got.message_id, got.stat) == ("A1", stat)
    assert got.stat.final is (stat is not receipt.Stat.ACCEPTED)


def test_the_tlvs_win_over_the_text() -> None:
    tlvs = {receipt.TLV_RECEIPTED_MESSAGE_ID: b"B2\x00", receipt.TLV_MESSAGE_STATE: bytes([5])}
    got = receipt.parse(STANDARD, tlvs)
    assert got is not None and (got.message_id, got.stat) == ("B2", receipt.Stat.UNDELIVERABLE)


@pytest.mark.parametrize(
    "raw",
    [b"", b"hello, is this a receipt?", b"id: stat:DELIVRD", b"id:A1 stat:MAYBE", b"paid:5 stat:DELIVRD"],
)
def test_what_is_no_receipt_is_none(raw: bytes) -> None:
    assert receipt.parse(raw) is None


def test_the_esm_class_says_what_is_a_receipt() -> None:
    assert receipt.is_receipt(0x04) and receipt.is_receipt(0x44)
    assert not receipt.is_receipt(0x00) and not receipt.is_receipt(0x40) and not receipt.is_receipt(0x08)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.dictionaries(st.sampled_from([0x1E, 0x427, 0x1]), st.binary(max_size=70)))
def test_any_deliver_sm_parses_or_is_none_and_never_raises(raw: bytes, tlvs: dict[int, bytes]) -> None:
    got = receipt.parse(raw, tlvs)
    assert got is None or (got.message_id and got.message_id.isprintable() and len(got.message_id) <= 65)


# ---- command_status through the provider's error table ---------------------------------------
def test_smpp_statuses_meet_the_same_policy_as_the_other_transports() -> None:
    from relay import provider_errors as pe

    wrong_password = pe.smpp_status(0x0E)
    assert wrong_password.answer is pe.SmppAnswer.PROVIDER
    assert pe.smpp_rule(wrong_password) is pe.ERRORS[2] and pe.ERRORS[2].action is pe.Action.PAUSE
    assert pe.smpp_rule(pe.smpp_status(0x0B)) is pe.ERRORS[7]  # the phone: fails, no retry
    assert pe.smpp_status(0x58).answer is pe.SmppAnswer.THROTTLE  # slows the session, fails nothing
    assert pe.smpp_status(0x14).answer is pe.SmppAnswer.THROTTLE
    assert pe.smpp_status(0x08).answer is pe.SmppAnswer.UNCERTAIN  # ask status.php before a resend
    vendor = pe.smpp_status(0x400)
    assert vendor.name == "command_status 0x00000400" and pe.smpp_rule(vendor) is pe.UNKNOWN
    assert all(s.code in pe.ERRORS for s in pe.SMPP_STATUSES.values() if s.answer is pe.SmppAnswer.PROVIDER)


# ---- any deliver_sm, read (receipt.read): the provider's bytes are not trusted ---------------
@settings(max_examples=300, deadline=None)
@given(
    esm_class=st.integers(0, 255),
    data=st.binary(max_size=2000),
    tlvs=st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=80), max_size=4),
    source=st.text(max_size=40),
    coding=st.sampled_from([0, 3, 8, 4]),
)
def test_any_deliver_sm_reads_without_error_into_a_short_printable_digest(
    esm_class: int, data: bytes, tlvs: dict[int, bytes], source: str, coding: int
) -> None:
    found = receipt.read(esm_class, data, tlvs, source=source, data_coding=coding)
    assert len(found.digest) <= receipt.MAX_DIGEST and found.digest.isprintable()
    assert "\n" not in found.digest and "\r" not in found.digest
    if found.kind is Inbound.RECEIPT:
        assert receipt.is_receipt(esm_class) and 0 < len(found.message_id) <= 65
        assert found.status in receipt.STATUS_CODE.values()
    else:
        assert found.message_id == "" and found.status == 0


@given(
    message_id=st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=20),
    stat=st.sampled_from(list(receipt.Stat)),
    err=st.integers(0, 999),
)
def test_a_receipt_gives_its_part_its_status(message_id: str, stat: receipt.Stat, err: int) -> None:
    text = f"id:{message_id} sub:001 dlvrd:001 submit date:2612041200 done date:2612041201 stat:{stat.value} err:{err:03d} text:x"
    found = receipt.read(0x04, text.encode(), {}, source="79991234567")
    assert (found.kind, found.message_id, found.status, found.err) == (
        Inbound.RECEIPT, message_id, receipt.STATUS_CODE[stat], err,
    )  # fmt: skip
    assert provider_errors.status_final(found.status) == stat.final
    assert (found.status in provider_errors.DELIVERED) == stat.delivered


def test_an_incoming_sms_and_a_malformed_receipt_are_told_apart() -> None:
    sms = receipt.read(0x00, "Привет".encode("utf-16-be"), {}, source="79991234567", data_coding=8)
    assert (sms.kind, sms.digest) == (Inbound.SMS, "from 79991234567: Привет")
    bad = receipt.read(0x04, b"id: stat:\x00\x07", {}, source="x")
    assert bad.kind is Inbound.MALFORMED and bad.digest == "from x: id: stat:"
