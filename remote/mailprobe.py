"""SMTP probes the worker makes itself (not through the agent): open relay, AUTH before STARTTLS, the certificate.

`probe_smtp(address, port)` opens ONE connection and walks it like a careful mail client:

    banner (220) → EHLO → MAIL FROM / RCPT TO an outside address → RSET
    → STARTTLS when offered → TLS handshake (certificate read, NOT trusted) → EHLO again → QUIT

and returns an `SmtpProbe`: facts, not verdicts. The caller (the rules) judges them: a relay refused
is a 5xx `relay_reply` (or a refused `mail_reply`), AUTH before TLS is a non-empty `auth_before_tls`,
the certificate's dates, names and issuer are in `certificate`.

Sources:
- RFC 5321 §4.2 (reply = three digits, "-" on every line but the last, the same code on each),
  §4.5.3.1.5 (a reply line is at most 512 octets: we accept up to `MAX_LINE_BYTES`), §4.1.1.1 (EHLO
  keywords), §3.3 / §4.1.1.2-3 (MAIL FROM / RCPT TO), §4.2.2-3 (250 OK, 5xx permanent refusals;
  MailEnable refuses relay with 503, see winlab/windows/smtp.py).
- RFC 3207 (STARTTLS): the server answers 220 and the handshake starts at once; afterwards the client
  MUST discard what it learnt and SHOULD send EHLO again, and the server may list AUTH only then
  (§4.2). Bytes the server sends after its 220 and before the handshake are an injection attempt:
  the probe stops there (CVE-2011-0411, the plaintext-injection class RFC 3207 §6 warns about).
- RFC 4954 (AUTH): the EHLO keyword `AUTH` followed by the SASL mechanisms; some servers also send
  the pre-standard `AUTH=LOGIN` form, read here as well.

Never sends DATA (nothing is ever delivered) nor AUTH (no credential leaves the worker). Never raises:
a failure becomes `error` (the probe could not finish) or `tls_error` (the TLS step failed). Everything
the host sends is untrusted: line length, lines per reply and bytes per session are capped, control
characters are removed, and the whole probe (connect included) ends within `timeout_s` (a watchdog
closes the socket at the deadline, whatever the server drip-feeds). Addresses may be IPv4, IPv6 or
names; with `management_networks` the address is vetted first (remote.networks) and the vetted
address is the one connected to.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
import socket
import ssl
import threading
import time
import unicodedata
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from lockdown.rules.checks import certificate_names_host
from remote.errors import OutsideManagementNetworks
from remote.networks import require_inside

MAX_LINE_BYTES: Final = 2048  # 4x RFC 5321's 512-octet reply line, for lenient servers
MAX_REPLY_LINES: Final = 64
MAX_SESSION_BYTES: Final = 256 * 1024
MAX_TEXT_CHARS: Final = 512  # a banner, a reply text, a certificate subject as kept in the result
MAX_KEYWORDS: Final = 64
MAX_CERT_NAMES: Final = 100
_KEYWORD = re.compile(r"[A-Z0-9][A-Z0-9-]{0,63}")  # RFC 5321 §4.1.1.1 ehlo-keyword
_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")  # RFC 4422 §3.1 SASL mechanism name
# Outside every host's domains by construction: ".example" is reserved (RFC 2606 §2), so no MailEnable
# post office can serve it (winlab's hosts, like many a test setup, serve example.com and example.net).
DEFAULT_RELAY_RECIPIENT: Final = "relay-probe@relay-test.example"
_REPLY_LINE = re.compile(rb"([0-9]{3})([ -]?)(.*)", re.DOTALL)


@dataclass(frozen=True)
class ProbedCertificate:
    """The certificate the server presented after STARTTLS, as parsed (not verified against any trust store).

    `self_signed`: issuer == subject and the certificate's own key verifies its signature. `dns_names`
    and `ip_addresses` are its subjectAltName entries (lower-case names); `sha256` the DER's fingerprint.
    """

    subject: str
    issuer: str
    not_before: datetime  # aware UTC
    not_after: datetime  # aware UTC
    dns_names: tuple[str, ...]
    sha256: str
    self_signed: bool
    ip_addresses: tuple[str, ...] = ()

    def names_host(self, host: str) -> bool:
        """Whether the certificate is issued to `host` (RFC 6125 §6.4; see `certificate_names_host`)."""
        return certificate_names_host(self.dns_names, self.ip_addresses, host)

    def to_evidence(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "dns_names": list(self.dns_names),
            "ip_addresses": list(self.ip_addresses),
            "sha256": self.sha256,
            "self_signed": self.self_signed,
        }


@dataclass(frozen=True)
class SmtpProbe:
    """What one SMTP session showed (see the module docstring for the walk and the sources).

    Fields beyond the contract's: `address`/`port` (where it connected), `mail_reply` (the reply to
    MAIL FROM; when that is refused there is no RCPT TO and `relay_reply` stays None), `tls_keywords`
    and `auth_after_tls` (the EHLO after the handshake).
    """

    connected: bool
    error: str | None
    banner: str | None
    plain_keywords: tuple[str, ...]
    auth_before_tls: tuple[str, ...]
    starttls_offered: bool
    tls_established: bool
    tls_error: str | None
    tls_version: str | None
    certificate: ProbedCertificate | None
    relay_reply: tuple[int, str] | None
    address: str = ""
    port: int = 0
    mail_reply: tuple[int, str] | None = None
    tls_keywords: tuple[str, ...] = ()
    auth_after_tls: tuple[str, ...] = ()

    def to_evidence(self) -> dict[str, Any]:
        """JSON-safe, for RuleResult.observed (every string in it is already capped and cleaned)."""

        def reply(value: tuple[int, str] | None) -> dict[str, Any] | None:
            return None if value is None else {"code": value[0], "text": value[1]}

        return {
            "address": self.address,
            "port": self.port,
            "connected": self.connected,
            "error": self.error,
            "banner": self.banner,
            "plain_keywords": list(self.plain_keywords),
            "auth_before_tls": list(self.auth_before_tls),
            "mail_reply": reply(self.mail_reply),
            "relay_reply": reply(self.relay_reply),
            "starttls_offered": self.starttls_offered,
            "tls_established": self.tls_established,
            "tls_error": self.tls_error,
            "tls_version": self.tls_version,
            "tls_keywords": list(self.tls_keywords),
            "auth_after_tls": list(self.auth_after_tls),
            "certificate": self.certificate.to_evidence() if self.certificate is not None else None,
        }


class _Stop(Exception):
    """The probe cannot go on (the message is `error` or `tls_error`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class _Reply:
    code: int
    lines: list[str]  # each line's text after the code, cleaned

    @property
    def text(self) -> str:
        return clean_text(" ".join(line for line in self.lines if line))

    def pair(self) -> tuple[int, str]:
        return self.code, self.text


def clean_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Untrusted text made safe to store and show: control/format characters removed, capped, trimmed."""
    kept = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    return kept.strip()[:limit]


class _Channel:
    """A socket with an SMTP reply reader that enforces every cap and the deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = bytearray()
        self.received = 0

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _Stop("timed out")
        return left

    def _fill(self) -> None:
        self.sock.settimeout(self._remaining())
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            raise _Stop("timed out waiting for the server") from None
        except ssl.SSLError as exc:
            raise _Stop(f"TLS error: {clean_text(exc.reason or str(exc), 120)}") from None
        except OSError as exc:
            if time.monotonic() >= self.deadline:
                raise _Stop("timed out waiting for the server") from None
            raise _Stop(f"connection lost ({exc.__class__.__name__})") from None
        if not data:
            raise _Stop("the server closed the connection")
        self.received += len(data)
        if self.received > MAX_SESSION_BYTES:
            raise _Stop(f"the server sent more than {MAX_SESSION_BYTES} bytes")
        self.buffer += data

    def read_line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                if end + 1 > MAX_LINE_BYTES:
                    break
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 1]
                return line.rstrip(b"\r")
            if len(self.buffer) > MAX_LINE_BYTES:
                break
            self._fill()
        raise _Stop(f"the server sent a reply line longer than {MAX_LINE_BYTES} bytes")

    def read_reply(self) -> _Reply:
        code: int | None = None
        lines: list[str] = []
        for _ in range(MAX_REPLY_LINES):
            match = _REPLY_LINE.fullmatch(self.read_line())
            if match is None:
                raise _Stop("the server's reply is not SMTP (no three-digit code)")
            line_code = int(match.group(1))
            if code is not None and line_code != code:
                raise _Stop("the server's reply changes its code between lines")
            code = line_code
            lines.append(clean_text(match.group(3).decode("utf-8", errors="replace")))
            if match.group(2) != b"-":
                return _Reply(code, lines)
        raise _Stop(f"the server's reply has more than {MAX_REPLY_LINES} lines")

    def command(self, line: str) -> _Reply:
        self.sock.settimeout(self._remaining())
        try:
            self.sock.sendall(line.encode("ascii") + b"\r\n")
        except TimeoutError:
            raise _Stop("timed out sending to the server") from None
        except OSError as exc:
            raise _Stop(f"connection lost ({exc.__class__.__name__})") from None
        return self.read_reply()


def _keywords(reply: _Reply) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(EHLO keywords, AUTH mechanisms) from a 250 EHLO reply; the first line is the greeting."""
    keywords: list[str] = []
    mechanisms: list[str] = []
    for line in reply.lines[1 : 1 + MAX_KEYWORDS]:
        head, _, params = line.upper().partition(" ")
        keyword, equals, legacy = head.partition("=")  # "AUTH=LOGIN PLAIN" (pre-RFC 4954 form)
        if not _KEYWORD.fullmatch(keyword):
            continue
        if keyword not in keywords:
            keywords.append(keyword)
        if keyword == "AUTH":
            for mech in ([legacy] if equals else []) + params.split():
                if _MECHANISM.fullmatch(mech) and mech not in mechanisms:
                    mechanisms.append(mech)
    return tuple(keywords), tuple(mechanisms)


def _read_context() -> ssl.SSLContext:
    # DANGER, deliberately: verification OFF. This context only READS the certificate so the caller can
    # judge it; nothing secret is ever sent over it (no AUTH, no DATA). Old protocol versions are allowed
    # for the same reason, so an old host's certificate is still read (its tls_version tells the caller).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with contextlib.suppress(ValueError, ssl.SSLError):
            context.minimum_version = ssl.TLSVersion.TLSv1
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def parse_certificate(der: bytes) -> ProbedCertificate:
    """A DER certificate as `ProbedCertificate` (raises ValueError when it cannot be parsed)."""
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = [clean_text(str(n), 253).lower() for n in san.get_values_for_type(x509.DNSName)]
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    self_signed = cert.issuer == cert.subject
    if self_signed:
        try:
            cert.verify_directly_issued_by(cert)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            self_signed = False
    return ProbedCertificate(
        subject=clean_text(cert.subject.rfc4514_string()),
        issuer=clean_text(cert.issuer.rfc4514_string()),
        not_before=cert.not_valid_before_utc.astimezone(UTC),
        not_after=cert.not_valid_after_utc.astimezone(UTC),
        dns_names=tuple(dict.fromkeys(dns))[:MAX_CERT_NAMES],
        ip_addresses=tuple(dict.fromkeys(ips))[:MAX_CERT_NAMES],
        sha256=hashlib.sha256(der).hexdigest(),
        self_signed=self_signed,
    )


@dataclass
class _Walk:
    """The probe's findings so far (frozen into an SmtpProbe at the end, whatever stopped it)."""

    address: str
    port: int
    connected: bool = False
    error: str | None = None
    banner: str | None = None
    plain_keywords: tuple[str, ...] = ()
    auth_before_tls: tuple[str, ...] = ()
    starttls_offered: bool = False
    tls_established: bool = False
    tls_error: str | None = None
    tls_version: str | None = None
    certificate: ProbedCertificate | None = None
    relay_reply: tuple[int, str] | None = None
    mail_reply: tuple[int, str] | None = None
    tls_keywords: tuple[str, ...] = ()
    auth_after_tls: tuple[str, ...] = ()

    def result(self) -> SmtpProbe:
        return SmtpProbe(
            connected=self.connected,
            error=self.error,
            banner=self.banner,
            plain_keywords=self.plain_keywords,
            auth_before_tls=self.auth_before_tls,
            starttls_offered=self.starttls_offered,
            tls_established=self.tls_established,
            tls_error=self.tls_error,
            tls_version=self.tls_version,
            certificate=self.certificate,
            relay_reply=self.relay_reply,
            address=self.address,
            port=self.port,
            mail_reply=self.mail_reply,
            tls_keywords=self.tls_keywords,
            auth_after_tls=self.auth_after_tls,
        )


def _connect(target: str, port: int, deadline: float) -> socket.socket:
    try:
        return socket.create_connection((target, port), timeout=max(deadline - time.monotonic(), 0.001))
    except ConnectionRefusedError:
        raise _Stop("connection refused") from None
    except TimeoutError:
        raise _Stop("timed out connecting") from None
    except socket.gaierror:
        raise _Stop("the host name does not resolve") from None
    except (OSError, UnicodeError) as exc:
        raise _Stop(f"cannot connect ({exc.__class__.__name__})") from None


def _ehlo(channel: _Channel, helo_name: str) -> _Reply | None:
    """EHLO, falling back to HELO when it is refused (RFC 5321 §4.1.4); None = HELO was used."""
    reply = channel.command(f"EHLO {helo_name}")
    if reply.code == 250:
        return reply
    if reply.code == 421:
        raise _Stop(f"the server ended the session: {reply.code} {reply.text}")
    helo = channel.command(f"HELO {helo_name}")
    if helo.code != 250:
        raise _Stop(f"the server refused EHLO and HELO: {helo.code} {helo.text}")
    return None


def _relay_test(channel: _Channel, walk: _Walk, sender: str, recipient: str) -> None:
    mail = channel.command(f"MAIL FROM:<{sender}>")
    walk.mail_reply = mail.pair()
    if mail.code == 421:
        raise _Stop(f"the server ended the session: {mail.code} {mail.text}")
    if mail.code // 100 == 2:
        rcpt = channel.command(f"RCPT TO:<{recipient}>")
        walk.relay_reply = rcpt.pair()
        if rcpt.code == 421:
            raise _Stop(f"the server ended the session: {rcpt.code} {rcpt.text}")
    rset = channel.command("RSET")  # never DATA: the transaction is abandoned here
    if rset.code == 421:
        raise _Stop(f"the server ended the session: {rset.code} {rset.text}")


def _start_tls(
    channel: _Channel, walk: _Walk, server_name: str | None, helo_name: str, sessions: list[socket.socket]
) -> bool:
    """STARTTLS, the handshake, the certificate, EHLO again. False when the session cannot continue.

    The TLS socket joins `sessions` before its handshake, so the watchdog can end a drip-fed one.
    """
    reply = channel.command("STARTTLS")
    if reply.code != 220:
        walk.tls_error = f"STARTTLS refused: {reply.code} {reply.text}"
        return reply.code != 421
    if channel.buffer:
        walk.tls_error = "the server sent data after its STARTTLS reply, before the TLS handshake"
        return False
    raw = channel.sock
    raw.settimeout(channel._remaining())
    try:
        tls = _read_context().wrap_socket(raw, server_hostname=server_name, do_handshake_on_connect=False)
        channel.sock = tls
        sessions.append(tls)
        tls.do_handshake()
    except TimeoutError:
        # The socket's timeout is what was left of the probe's: the deadline has passed.
        walk.tls_error = "TLS handshake timed out"
        raise _Stop("timed out during the TLS handshake") from None
    except ssl.SSLError as exc:
        walk.tls_error = f"TLS handshake failed: {clean_text(exc.reason or str(exc), 200)}"
        return False
    except OSError as exc:
        walk.tls_error = f"TLS handshake failed: connection lost ({exc.__class__.__name__})"
        return False
    walk.tls_established = True
    walk.tls_version = tls.version()
    der = tls.getpeercert(binary_form=True)
    if der is None:
        walk.tls_error = "the server presented no certificate"
    else:
        try:
            walk.certificate = parse_certificate(der)
        except ValueError as exc:
            walk.tls_error = f"the server's certificate cannot be parsed: {clean_text(str(exc), 200)}"
    try:
        again = _ehlo(channel, helo_name)  # RFC 3207 §4.2: forget the plaintext EHLO, ask again
    except _Stop as stop:
        walk.tls_error = walk.tls_error or f"after the handshake: {stop.message}"
        return False
    if again is not None:
        walk.tls_keywords, walk.auth_after_tls = _keywords(again)
    return True


def probe_smtp(
    address: str,
    port: int,
    *,
    timeout_s: float = 10.0,
    helo_name: str = "fleet-lockdown.invalid",
    relay_sender: str = "relay-probe@fleet-lockdown.invalid",
    relay_recipient: str = DEFAULT_RELAY_RECIPIENT,
    management_networks: tuple[str, ...] = (),
) -> SmtpProbe:
    """Probe `address:port` once (module docstring). Never raises; the whole probe ends within `timeout_s`.

    `management_networks` (the customer's, as for WinRM): when set, an address outside them is never
    connected to (`connected=False`, `error` says why). `relay_recipient` must be outside every domain
    the host serves; `helo_name`, `relay_sender` and `relay_recipient` are the worker's own (ASCII) values.
    """
    host = address.strip().strip("[]")
    walk = _Walk(address=clean_text(host, 253), port=port)
    for value in (helo_name, relay_sender, relay_recipient):
        if not value.isascii() or any(ch in value for ch in "\r\n<> ") or not value:
            walk.error = "the probe's own HELO name, sender or recipient is not a plain ASCII address"
            return walk.result()
    deadline = time.monotonic() + timeout_s
    try:
        vetted = require_inside(host, port, management_networks)
    except OutsideManagementNetworks as refused:
        walk.error = refused.message
        return walk.result()
    target = str(vetted) if vetted is not None else host
    try:
        ipaddress.ip_address(host)
        server_name: str | None = None  # no SNI for an address literal (RFC 6066 §3)
    except ValueError:
        server_name = host
    channel: _Channel | None = None
    sessions: list[socket.socket] = []
    closed = threading.Event()

    def watchdog() -> None:
        # Unblocks whatever the probe is waiting in (a drip-fed handshake included) at the deadline.
        closed.set()
        for sock in sessions:
            with contextlib.suppress(OSError):
                # The plain socket's shutdown, also for an SSLSocket (whose own would drop its TLS state
                # under the other thread's feet): the blocked call then returns or fails at once.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    timer = threading.Timer(timeout_s, watchdog)
    timer.daemon = True
    timer.start()
    try:
        channel = _Channel(_connect(target, port, deadline), deadline)
        sessions.append(channel.sock)
        walk.connected = True
        greeting = channel.read_reply()
        walk.banner = clean_text(f"{greeting.code} {greeting.text}")
        if greeting.code != 220:
            raise _Stop(f"the server refused the session: {greeting.code} {greeting.text}")
        ehlo = _ehlo(channel, helo_name)
        if ehlo is not None:
            walk.plain_keywords, walk.auth_before_tls = _keywords(ehlo)
        walk.starttls_offered = "STARTTLS" in walk.plain_keywords
        _relay_test(channel, walk, relay_sender, relay_recipient)
        go_on = True
        if walk.starttls_offered:
            go_on = _start_tls(channel, walk, server_name, helo_name, sessions)
        if go_on:
            with contextlib.suppress(_Stop):
                channel.command("QUIT")
    except _Stop as stop:
        walk.error = stop.message
    except Exception as exc:  # never raise: an unforeseen failure is still a finding, not a crash
        walk.error = f"probe failed ({exc.__class__.__name__})"
    finally:
        timer.cancel()
        if closed.is_set():
            # What failed then failed because the watchdog closed the socket at the deadline.
            deadline_passed = f"timed out: the probe did not finish within {timeout_s:g} s"
            if walk.error is not None:
                walk.error = deadline_passed
            elif walk.tls_error is not None and not walk.tls_established:
                walk.tls_error = walk.error = deadline_passed
        if channel is not None:
            with contextlib.suppress(OSError):
                channel.sock.close()
    return walk.result()
