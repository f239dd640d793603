"""remote.mailprobe against scripted SMTP servers on loopback: the walk, the parsing, every cap, hostile replies."""

from __future__ import annotations

import contextlib
import datetime
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from remote.mailprobe import (
    MAX_LINE_BYTES,
    MAX_REPLY_LINES,
    MAX_SESSION_BYTES,
    MAX_TEXT_CHARS,
    ProbedCertificate,
    clean_text,
    probe_smtp,
)

BANNER = b"220 mx.example.test ESMTP MailEnable Service, Version: 10.43-- ready at 01/01/24 00:00:00\r\n"
RELAY_DENIED = (
    b"503 This mail server requires authentication when attempting to send to a non-local e-mail address.\r\n"
)
UTC = datetime.UTC


@dataclass
class Conn:
    """The server's side of one connection: read a command line, send raw bytes."""

    sock: socket.socket
    commands: list[str]
    buffer: bytes = b""

    def line(self) -> str | None:
        while b"\r\n" not in self.buffer:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return None
            if not data:
                return None
            self.buffer += data
        raw, self.buffer = self.buffer.split(b"\r\n", 1)
        text = raw.decode("ascii", "replace")
        self.commands.append(text)
        return text

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(data)


@dataclass
class Scripted:
    """A one-connection server on loopback that runs `handler`; `commands` is what the probe sent."""

    handler: Callable[[Conn], None]
    family: socket.AddressFamily = socket.AF_INET
    commands: list[str] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        host = "::1" if self.family == socket.AF_INET6 else "127.0.0.1"
        self.server = socket.create_server((host, 0), family=self.family)
        self.address = host
        self.port = self.server.getsockname()[1]
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            sock, _ = self.server.accept()
        except OSError:
            return
        self.connections += 1
        try:
            self.handler(Conn(sock, self.commands))
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            self.done.set()

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    def start(handler: Callable[[Conn], None], family: socket.AddressFamily = socket.AF_INET) -> Scripted:
        server = Scripted(handler, family)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def mailenable_like(
    *,
    ehlo: bytes = b"250-mx.example.test [127.0.0.1]\r\n250-AUTH LOGIN CRAM-MD5\r\n250-SIZE 0\r\n250 HELP\r\n",
    mail: bytes = b"250 Requested mail action okay, completed\r\n",
    rcpt: bytes = RELAY_DENIED,
    starttls: Callable[[Conn], bool] | None = None,
    banner: bytes = BANNER,
) -> Callable[[Conn], None]:
    """A plain command loop; `starttls(conn)` takes over at STARTTLS (returns False to end the session)."""

    def handler(conn: Conn) -> None:
        conn.send(banner)
        while (line := conn.line()) is not None:
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                conn.send(ehlo)
            elif verb == "MAIL":
                conn.send(mail)
            elif verb == "RCPT":
                conn.send(rcpt)
            elif verb == "STARTTLS" and starttls is not None:
                if not starttls(conn):
                    return
            elif verb in ("RSET", "NOOP"):
                conn.send(b"250 Requested mail action okay, completed\r\n")
            elif verb == "QUIT":
                conn.send(b"221 Service closing transmission channel\r\n")
                return
            else:
                conn.send(b"503 Bad sequence of commands\r\n")

    return handler


def self_signed(tmp: Path, name: str = "mx.example.test", days: int = 30) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name), x509.DNSName("*.mail.example.test")]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def tls_upgrade(
    context: ssl.SSLContext, after_tls_ehlo: bytes = b"250-mx.example.test\r\n250-AUTH LOGIN\r\n250 HELP\r\n"
) -> Callable[[Conn], bool]:
    """STARTTLS done right: 220, a real handshake, then EHLO/QUIT over TLS."""

    def upgrade(conn: Conn) -> bool:
        conn.send(b"220 Ready to start TLS\r\n")
        try:
            tls = context.wrap_socket(conn.sock, server_side=True)
        except (ssl.SSLError, OSError):
            return False
        inner = Conn(tls, conn.commands)
        while (line := inner.line()) is not None:
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                inner.send(after_tls_ehlo)
            elif verb == "QUIT":
                inner.send(b"221 Service closing transmission channel\r\n")
                break
        with contextlib.suppress(OSError):
            tls.close()
        return False

    return upgrade


# --- the walk ------------------------------------------------------------------------------------
def test_plain_walk_reports_keywords_auth_and_the_relay_refusal_and_never_sends_data(serve) -> None:
    server = serve(mailenable_like())
    probe = probe_smtp(server.address, server.port, timeout_s=5)
    assert probe.connected
    assert probe.error is None
    assert probe.banner == BANNER.decode().strip()
    assert probe.plain_keywords == ("AUTH", "SIZE", "HELP")
    assert probe.auth_before_tls == ("LOGIN", "CRAM-MD5")
    assert probe.relay_reply == (503, RELAY_DENIED.decode()[4:].strip())
    assert probe.mail_reply == (250, "Requested mail action okay, completed")
    assert not probe.starttls_offered
    assert not probe.tls_established
    assert probe.certificate is None
    server.done.wait(5)
    assert [c.split(" ", 1)[0] for c in server.commands] == ["EHLO", "MAIL", "RCPT", "RSET", "QUIT"]
    assert server.commands[2] == "RCPT TO:<relay-probe@relay-test.example>"
    assert not any(c.upper().startswith(("DATA", "AUTH")) for c in server.commands)


def test_an_accepted_outside_recipient_is_reported_as_the_250_it_got(serve) -> None:
    server = serve(mailenable_like(rcpt=b"250 Requested mail action okay, completed\r\n"))
    probe = probe_smtp(server.address, server.port, timeout_s=5, relay_recipient="someone@elsewhere.test")
    assert probe.relay_reply == (250, "Requested mail action okay, completed")
    server.done.wait(5)
    assert "RCPT TO:<someone@elsewhere.test>" in server.commands


def test_pre_standard_auth_equals_form_counts_as_auth_before_tls(serve) -> None:
    server = serve(mailenable_like(ehlo=b"250-mx\r\n250-AUTH=LOGIN PLAIN\r\n250-AUTH LOGIN NTLM\r\n250 SIZE 100\r\n"))
    probe = probe_smtp(server.address, server.port, timeout_s=5)
    assert probe.plain_keywords == ("AUTH", "SIZE")
    assert probe.auth_before_tls == ("LOGIN", "PLAIN", "NTLM")


def test_a_refused_mail_from_means_no_rcpt_is_sent(serve) -> None:
    server = serve(mailenable_like(mail=b"530 Authentication required\r\n"))
    probe = probe_smtp(server.address, server.port, timeout_s=5)
    assert probe.error is None
    assert probe.mail_reply == (530, "Authentication required")
    assert probe.relay_reply is None
    server.done.wait(5)
    assert not any(c.startswith("RCPT") for c in server.commands)


def test_a_refused_ehlo_falls_back_to_helo_with_no_keywords(serve) -> None:
    def handler(conn: Conn) -> None:
        conn.send(BANNER)
        while (line := conn.line()) is not None:
            verb = line.split(" ", 1)[0]
            reply = {"EHLO": b"502 Command not implemented\r\n", "QUIT": b"221 bye\r\n"}.get(verb, b"250 ok\r\n")
            conn.send(reply)
            if verb == "QUIT":
                return

    server = serve(handler)
    probe = probe_smtp(server.address, server.port, timeout_s=5)
    assert probe.error is None
    assert probe.plain_keywords == ()
    assert probe.auth_before_tls == ()
    assert probe.relay_reply == (250, "ok")
    server.done.wait(5)
    assert server.commands[:2] == ["EHLO fleet-lockdown.invalid", "HELO fleet-lockdown.invalid"]


def test_a_refusing_greeting_ends_the_probe_and_keeps_the_banner(serve) -> None:
    server = serve(lambda conn: conn.send(b"554 No SMTP service here\r\n"))
    probe = probe_smtp(server.address, server.port, timeout_s=5)
    assert probe.connected
    assert probe.banner == "554 No SMTP service here"
    assert probe.error is not None
    assert "554" in probe.error
    assert probe.relay_reply is None


def test_invalid_keywords_and_mechanisms_are_dropped(serve) -> None:
    ehlo = b"250-mx\r\n250-AUTH LOGIN <script> x" + b"Y" * 40 + b"\r\n250-!!!\r\n250-8BITMIME\r\n250 HELP\r\n"
    probe = probe_smtp(*_at(serve(mailenable_like(ehlo=ehlo))), timeout_s=5)
    assert probe.plain_keywords == ("AUTH", "8BITMIME", "HELP")
    assert probe.auth_before_tls == ("LOGIN",)


# --- hostile servers -----------------------------------------------------------------------------
def _at(server: Scripted) -> tuple[str, int]:
    return server.address, server.port


def test_an_endless_multiline_reply_is_cut_at_the_line_limit(serve) -> None:
    def endless(conn: Conn) -> None:
        conn.send(BANNER)
        conn.line()
        for _ in range(MAX_REPLY_LINES * 4):
            conn.send(b"250-X\r\n")

    probe = probe_smtp(*_at(serve(endless)), timeout_s=5)
    assert probe.connected
    assert probe.error == f"the server's reply has more than {MAX_REPLY_LINES} lines"
    assert probe.plain_keywords == ()


def test_a_reply_line_without_end_is_cut_at_the_length_limit(serve) -> None:
    def huge(conn: Conn) -> None:
        conn.send(b"220 " + b"A" * (MAX_LINE_BYTES * 8))

    probe = probe_smtp(*_at(serve(huge)), timeout_s=5)
    assert probe.error == f"the server sent a reply line longer than {MAX_LINE_BYTES} bytes"
    assert probe.banner is None


def test_a_long_line_that_does_end_is_still_refused(serve) -> None:
    probe = probe_smtp(*_at(serve(lambda c: c.send(b"220 " + b"A" * MAX_LINE_BYTES + b"\r\n"))), timeout_s=5)
    assert probe.error == f"the server sent a reply line longer than {MAX_LINE_BYTES} bytes"


def test_a_line_just_inside_the_limit_is_read(serve) -> None:
    text = b"A" * (MAX_LINE_BYTES - 6)  # "220 " + text + CRLF = MAX_LINE_BYTES
    probe = probe_smtp(*_at(serve(lambda c: (c.send(b"220 " + text + b"\r\n"), c.line(), c.send(b"421 bye\r\n")))))
    assert probe.banner == "220 " + "A" * (MAX_TEXT_CHARS - 4)
    assert probe.error is not None
    assert "421" in probe.error


def test_a_line_one_byte_over_the_limit_is_refused(serve) -> None:
    text = b"A" * (MAX_LINE_BYTES - 5)  # "220 " + text + CRLF = MAX_LINE_BYTES + 1
    probe = probe_smtp(*_at(serve(lambda c: c.send(b"220 " + text + b"\r\n"))), timeout_s=5)
    assert probe.error == f"the server sent a reply line longer than {MAX_LINE_BYTES} bytes"


@pytest.mark.parametrize(("lines", "refused"), [(MAX_REPLY_LINES, False), (MAX_REPLY_LINES + 1, True)])
def test_a_reply_may_have_at_most_the_line_limit(serve, lines: int, refused: bool) -> None:
    ehlo = b"250-mx\r\n" + b"250-X\r\n" * (lines - 2) + b"250 HELP\r\n"
    probe = probe_smtp(*_at(serve(mailenable_like(ehlo=ehlo))), timeout_s=5)
    assert (probe.error == f"the server's reply has more than {MAX_REPLY_LINES} lines") is refused
    assert (probe.plain_keywords == ("X", "HELP")) is not refused


def test_a_session_may_receive_at_most_the_byte_limit(serve) -> None:
    # Every reply within the line and length limits, but together more than the session may read.
    big = b"".join(b"250-" + b"K" * (MAX_LINE_BYTES - 8) + b"\r\n" for _ in range(MAX_REPLY_LINES - 1)) + b"250 OK\r\n"
    probe = probe_smtp(*_at(serve(mailenable_like(ehlo=big, mail=big, rcpt=big))), timeout_s=5)
    assert probe.error == f"the server sent more than {MAX_SESSION_BYTES} bytes"


def test_nuls_and_control_characters_never_reach_the_result(serve) -> None:
    banner = b"220 mx\x00.example\x1b[31m ESMTP\x07 MailEnable\x7f Service\xe2\x80\x8b\r\n"
    ehlo = b"250-mx\x00\r\n250-AUTH LOGIN\x00PLAIN\r\n250 HELP\r\n"
    probe = probe_smtp(*_at(serve(mailenable_like(banner=banner, ehlo=ehlo))), timeout_s=5)
    assert probe.banner == "220 mx.example[31m ESMTP MailEnable Service"
    assert probe.auth_before_tls == ("LOGINPLAIN",)
    assert all(ch.isprintable() for ch in json.dumps(probe.to_evidence()))


def test_a_server_that_never_answers_times_out(serve) -> None:
    silent = threading.Event()
    server = serve(lambda conn: silent.wait(10))
    probe = probe_smtp(*_at(server), timeout_s=0.5)
    silent.set()
    assert probe.connected
    assert probe.error is not None
    assert probe.error.startswith("timed out")
    assert probe.banner is None


def test_a_server_that_drips_one_line_at_a_time_still_ends_at_the_deadline(serve) -> None:
    stop = threading.Event()

    def drip(conn: Conn) -> None:
        conn.send(BANNER)
        conn.line()
        while not stop.wait(0.05):  # 64 lines would take 3.2 s: the 1 s deadline comes first
            conn.send(b"250-X\r\n")

    probe = probe_smtp(*_at(serve(drip)), timeout_s=1.0)
    stop.set()
    assert probe.error is not None
    assert probe.error.startswith("timed out")


def test_a_reply_that_is_not_smtp_is_a_protocol_error(serve) -> None:
    probe = probe_smtp(*_at(serve(lambda c: c.send(b"HTTP/1.1 400 Bad Request\r\n"))), timeout_s=5)
    assert probe.error == "the server's reply is not SMTP (no three-digit code)"


def test_a_reply_whose_code_changes_between_lines_is_a_protocol_error(serve) -> None:
    probe = probe_smtp(*_at(serve(mailenable_like(ehlo=b"250-mx\r\n354-AUTH LOGIN\r\n250 HELP\r\n"))), timeout_s=5)
    assert probe.error == "the server's reply changes its code between lines"
    assert probe.auth_before_tls == ()


def test_a_server_closing_mid_reply_is_reported(serve) -> None:
    probe = probe_smtp(*_at(serve(lambda c: c.send(b"220-first line\r\n"))), timeout_s=5)
    assert probe.error == "the server closed the connection"


def test_a_refused_connection_is_not_connected() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    probe = probe_smtp("127.0.0.1", port, timeout_s=5)
    assert not probe.connected
    assert probe.error == "connection refused"
    assert probe.to_evidence()["connected"] is False


def test_an_address_outside_the_management_networks_is_never_connected_to(serve) -> None:
    server = serve(mailenable_like())
    probe = probe_smtp(server.address, server.port, timeout_s=2, management_networks=("10.20.0.0/16",))
    assert not probe.connected
    assert probe.error == "the host's address is outside the customer's management networks"
    assert server.connections == 0


def test_ipv6_addresses_are_probed(serve) -> None:
    try:
        server = serve(mailenable_like(), socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    probe = probe_smtp(f"[{server.address}]", server.port, timeout_s=5)
    assert probe.connected
    assert probe.error is None
    assert probe.address == "::1"


def test_the_probes_own_values_must_be_plain_addresses() -> None:
    probe = probe_smtp("127.0.0.1", 25, relay_recipient="x@y.test>\r\nDATA")
    assert not probe.connected
    assert probe.error is not None


# --- STARTTLS ------------------------------------------------------------------------------------
STARTTLS_EHLO = b"250-mx.example.test\r\n250-SIZE 0\r\n250-STARTTLS\r\n250 HELP\r\n"


def _server_context(tmp: Path, **kw: object) -> ssl.SSLContext:
    cert, key = self_signed(tmp, **kw)  # type: ignore[arg-type]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_starttls_reads_the_certificate_without_trusting_it_and_asks_ehlo_again(serve, tmp_path: Path) -> None:
    server = serve(mailenable_like(ehlo=STARTTLS_EHLO, starttls=tls_upgrade(_server_context(tmp_path, days=10))))
    probe = probe_smtp(*_at(server), timeout_s=5)
    assert probe.error is None
    assert probe.tls_error is None
    assert probe.starttls_offered
    assert probe.tls_established
    assert probe.auth_before_tls == ()
    assert probe.tls_keywords == ("AUTH", "HELP")
    assert probe.auth_after_tls == ("LOGIN",)
    assert probe.tls_version in ("TLSv1.2", "TLSv1.3")
    cert = probe.certificate
    assert cert is not None
    assert cert.self_signed
    assert cert.subject == cert.issuer == "CN=mx.example.test"
    assert cert.dns_names == ("mx.example.test", "*.mail.example.test")
    assert cert.not_after.tzinfo is not None
    left = cert.not_after - datetime.datetime.now(UTC)
    assert datetime.timedelta(days=9) < left <= datetime.timedelta(days=10)
    assert len(cert.sha256) == 64
    server.done.wait(5)
    assert server.commands[-2:] == ["EHLO fleet-lockdown.invalid", "QUIT"]
    json.dumps(probe.to_evidence())  # JSON-safe with a certificate too


def test_starttls_refused_is_a_tls_error_and_the_session_still_quits(serve) -> None:
    def refuse(conn: Conn) -> bool:
        conn.send(b"454 TLS not available due to temporary reason\r\n")
        return True

    server = serve(mailenable_like(ehlo=STARTTLS_EHLO, starttls=refuse))
    probe = probe_smtp(*_at(server), timeout_s=5)
    assert probe.error is None
    assert probe.tls_error == "STARTTLS refused: 454 TLS not available due to temporary reason"
    assert not probe.tls_established
    assert probe.certificate is None
    server.done.wait(5)
    assert server.commands[-1] == "QUIT"


def test_bytes_injected_between_the_starttls_reply_and_the_handshake_stop_the_probe(serve) -> None:
    def inject(conn: Conn) -> bool:
        conn.send(b"220 Ready to start TLS\r\n250 injected\r\n")
        conn.line()
        return False

    probe = probe_smtp(*_at(serve(mailenable_like(ehlo=STARTTLS_EHLO, starttls=inject))), timeout_s=5)
    assert probe.tls_error == "the server sent data after its STARTTLS reply, before the TLS handshake"
    assert not probe.tls_established


def test_a_handshake_with_garbage_is_a_tls_error(serve) -> None:
    def garbage(conn: Conn) -> bool:
        conn.send(b"220 Ready to start TLS\r\n")
        conn.sock.recv(4096)
        conn.send(b"this is not TLS at all\r\n" * 4)
        return False

    probe = probe_smtp(*_at(serve(mailenable_like(ehlo=STARTTLS_EHLO, starttls=garbage))), timeout_s=5)
    assert probe.tls_error is not None
    assert probe.tls_error.startswith("TLS handshake failed")
    assert not probe.tls_established
    assert probe.certificate is None


def test_a_handshake_that_never_completes_ends_at_the_deadline(serve) -> None:
    hold = threading.Event()

    def stall(conn: Conn) -> bool:
        conn.send(b"220 Ready to start TLS\r\n")
        hold.wait(10)
        return False

    probe = probe_smtp(*_at(serve(mailenable_like(ehlo=STARTTLS_EHLO, starttls=stall))), timeout_s=1.0)
    hold.set()
    assert not probe.tls_established
    assert probe.tls_error is not None
    assert "timed out" in probe.tls_error


def test_a_drip_fed_handshake_ends_at_the_deadline(serve) -> None:
    # A TLS record header announcing 16 KiB, then one byte every 50 ms: every read gets data in time,
    # only the probe's own deadline ends it (the server gives up after 8 s).
    def drip(conn: Conn) -> bool:
        conn.send(b"220 Ready to start TLS\r\n")
        conn.sock.recv(4096)
        conn.send(b"\x16\x03\x03\x40\x00")
        for _ in range(160):
            conn.send(b"\x00")
            if conn.sock.fileno() < 0:
                break
            threading.Event().wait(0.05)
        return False

    probe = probe_smtp(*_at(serve(mailenable_like(ehlo=STARTTLS_EHLO, starttls=drip))), timeout_s=1.0)
    assert not probe.tls_established
    assert probe.tls_error is not None
    assert "timed out" in probe.tls_error
    assert probe.error is not None
    assert probe.error.startswith("timed out")


# --- the certificate's names and the text cleaner --------------------------------------------------
def _cert(dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> ProbedCertificate:
    now = datetime.datetime.now(UTC)
    return ProbedCertificate("CN=x", "CN=x", now, now, dns, "0" * 64, False, ips)


@pytest.mark.parametrize(
    ("names", "host", "expected"),
    [
        (("mail.example.com",), "mail.example.com", True),
        (("mail.example.com",), "MAIL.Example.com.", True),
        (("mail.example.com",), "example.com", False),
        (("*.example.com",), "mail.example.com", True),
        (("*.example.com",), "example.com", False),
        (("*.example.com",), "a.b.example.com", False),
        (("mail.example.com",), "mail.example.org", False),
    ],
)
def test_names_host_follows_rfc_6125(names: tuple[str, ...], host: str, expected: bool) -> None:
    assert _cert(dns=names).names_host(host) is expected


def test_names_host_matches_ip_addresses_only_against_ip_entries() -> None:
    cert = _cert(dns=("127.0.0.1",), ips=("::1", "10.0.0.5"))
    assert cert.names_host("10.0.0.5")
    assert cert.names_host("[::1]")
    assert not cert.names_host("127.0.0.1")


def test_clean_text_removes_controls_and_caps() -> None:
    assert clean_text("a\x00b\r\nc\u200bd\x1b", 3) == "abc"
    assert len(clean_text("x" * 10_000)) == MAX_TEXT_CHARS
