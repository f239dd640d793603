"""The SMTP connector model (winlab.windows.smtp): what MailEnable answers, line by line, per setting."""

from __future__ import annotations

import pytest

from winlab.windows.smtp import BAD_SEQUENCE, RELAY_DENIED, SmtpConversation, SmtpSettings, edition_has_ssl


def conversation(tls_available: bool = True, **settings: object) -> SmtpConversation:
    return SmtpConversation(
        host_name="ME01",
        peer="127.0.0.1",
        settings=SmtpSettings(**settings),  # type: ignore[arg-type]
        local_domains=("Example.com", "example.net"),
        tls_available=tls_available,
    )


@pytest.mark.parametrize(
    ("edition", "major", "expected"),
    [
        ("Enterprise", 2, True),
        ("Enterprise", 10, True),
        ("Professional", 2, False),
        ("Professional", 9, True),
        ("Professional", 10, True),
        ("Standard", 10, False),
    ],
)
def test_ssl_is_available_on_enterprise_and_professional_9_and_later_only(
    edition: str, major: int, expected: bool
) -> None:
    assert edition_has_ssl(edition, major) is expected


def test_the_hardened_default_offers_starttls_and_auth_only_after_it() -> None:
    smtp = conversation()
    assert smtp.answer("EHLO client").text == "250-ME01 [127.0.0.1]\r\n250-SIZE 0\r\n250-STARTTLS\r\n250 HELP"
    reply = smtp.answer("STARTTLS")
    assert reply.start_tls
    assert reply.text.startswith("220 ")
    smtp.tls_started()
    after = smtp.answer("EHLO client").text
    assert after == "250-ME01 [127.0.0.1]\r\n250-AUTH LOGIN CRAM-MD5\r\n250-SIZE 0\r\n250 HELP"
    assert smtp.answer("STARTTLS").text == BAD_SEQUENCE  # not twice


def test_never_allowed_authentication_is_never_advertised() -> None:
    smtp = conversation(auth_mode="never")
    smtp.tls_started()
    assert "AUTH" not in smtp.answer("EHLO client").text


def test_without_tls_starttls_is_neither_listed_nor_accepted() -> None:
    smtp = conversation(tls_available=False, auth_mode="always")
    assert smtp.answer("EHLO client").text.split("\r\n")[1] == "250-AUTH LOGIN CRAM-MD5"
    assert "STARTTLS" not in smtp.answer("EHLO client").text
    assert smtp.answer("STARTTLS").text == BAD_SEQUENCE


def test_closed_relay_refuses_only_outside_domains() -> None:
    smtp = conversation()
    assert smtp.answer("RCPT TO:<a@elsewhere.test>").text == BAD_SEQUENCE  # no MAIL FROM yet
    assert smtp.answer("MAIL FROM:<x@sender.test>").text.startswith("250 ")
    assert smtp.answer("RCPT TO:<a@elsewhere.test>").text == RELAY_DENIED
    assert smtp.answer("RCPT TO:<user1@EXAMPLE.com>").text.startswith("250 ")
    assert smtp.answer("rcpt to:<user1@example.net>").text.startswith("250 ")
    assert smtp.answer("RCPT TO:a@elsewhere.test").text.startswith("501 ")


def test_open_relay_accepts_outside_domains() -> None:
    smtp = conversation(relay="open")
    smtp.answer("MAIL FROM:<>")
    assert smtp.answer("RCPT TO:<a@elsewhere.test>").text.startswith("250 ")


def test_rset_and_a_new_greeting_forget_the_sender() -> None:
    smtp = conversation()
    for reset in ("RSET", "EHLO again"):
        smtp.answer("MAIL FROM:<x@sender.test>")
        smtp.answer(reset)
        assert smtp.answer("RCPT TO:<user1@example.com>").text == BAD_SEQUENCE


@pytest.mark.parametrize(
    "bad",
    [
        {"relay": "ajar"},
        {"auth_mode": "sometimes"},
        {"certificate_days": 1.5},
        {"certificate_days": True},
        {"certificate_days": 99_999},
        {"certificate_name": "not a name"},
        {"certificate_name": ""},
    ],
)
def test_settings_refuse_what_the_product_cannot_be_set_to(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        SmtpSettings(**bad)  # type: ignore[arg-type]
