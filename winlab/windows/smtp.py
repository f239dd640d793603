"""MailEnable's SMTP connector as a client sees it on the wire: EHLO, relay, AUTH advertisement, STARTTLS.

Pure (no sockets, no clock): `winlab/mail.py` feeds `SmtpConversation` one command line at a time and
performs the TLS upgrade it asks for. What is modelled, and where it comes from:

- **Relay.** MailEnable's Relay tab: "Enable Mail Relay" with options, the recommended Internet setting
  being *only* "Allow relay for authenticated senders"
  (http://www.mailenable.com/documentation/10.0/Enterprise/SMTP_props_-_Relay.html; reference
  standards-and-advisories.md §1.2 "Relay"). ``relay="closed"`` is that setting: an unauthenticated
  ``RCPT TO`` for a domain that is none of the host's post offices gets MailEnable's refusal,
  `RELAY_DENIED`. Its text is quoted from real MailEnable sessions in public bounce parsers:
  sisimai/rb-sisimai lib/sisimai/reason/norelaying.rb lists "mail server requires authentication when
  attempting to send to a non-local e-mail address" with the comment ``# MailEnable``, and mySociety's
  HandleMail tests carry the whole reply with its code, 503. ``relay="open"`` (relay allowed for
  everyone, e.g. a privileged-IP range that "may coincidentally permit access to everyone") accepts
  it with 250.
- **AUTH before STARTTLS.** The SMTP port's "Authentication Mode": "Always allow authentication",
  "Never allow authentication", "Only allow secure authentication (using SSL or TLS)"
  (http://mailenable.com/documentation/10.0/Enterprise/SMTP_props_-_Inbound.html). ``secure_only``
  (the hardened default here) lists AUTH in EHLO only on a TLS session; ``always`` lists it in the
  plaintext EHLO too; ``never`` not at all. RFC 3207 §4.2: after STARTTLS the client discards what it
  knew and sends EHLO again, and the server may then list other extensions (AUTH among them); it
  must not list STARTTLS again.
- **STARTTLS.** One certificate serves SMTP, POP and IMAP (`…\\Security\\Default SSL Certificate`,
  http://www.mailenable.com/Help/Files/ssl.htm). SSL is "Enterprise Edition only" in the older help
  (ssl.htm, smtpinbound.htm, serverconfiguration.htm); the v9 Professional guide lists "POP Enable
  SSL" without that restriction (http://www.mailenable.com/documentation/9.0/Professional/POP_General.html),
  so Professional 9+ has it too. No Standard guide found offers SSL (**U**): Standard never offers
  STARTTLS here. Without a certificate configured STARTTLS is not offered either. An expired
  certificate is still presented (MailEnable serves what is configured; **U**: no source says it
  refuses an expired one). The reply to STARTTLS is RFC 3207's example text (MailEnable's own not found).
- Not modelled: the AUTH exchange itself and DATA (no test client sends them; both get 503).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, get_args

RelayPolicy = Literal["closed", "open"]
AuthMode = Literal["secure_only", "always", "never"]
RELAY_DENIED: Final = (
    "503 This mail server requires authentication when attempting to send to a non-local e-mail address. "
    "Please check your mail client settings or contact your administrator to verify that the domain or "
    "address is defined for this server."
)
OK: Final = "250 Requested mail action okay, completed"
BAD_SEQUENCE: Final = "503 Bad sequence of commands"
SYNTAX_ERROR: Final = "501 Syntax error in parameters or arguments"  # RFC 5321 §4.2.3
READY_FOR_TLS: Final = "220 Ready to start TLS"  # RFC 3207 §4 example
AUTH_MECHANISMS: Final = "LOGIN CRAM-MD5"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$)(\*\.)?{_LABEL}(\.{_LABEL})*$")
_PATH = re.compile(r"^(?:FROM|TO):\s*<([^<>]*)>", re.IGNORECASE)


@dataclass(frozen=True)
class SmtpSettings:
    """One host's SMTP connector settings that the probes see (see the module docstring).

    `certificate_days`: days until the configured certificate's notAfter (negative: expired that many
    days ago); None = no certificate configured. `certificate_name`: the one name the certificate is
    issued to (a wrong name); None = the host's SMTP host name, computer name and address.
    """

    relay: RelayPolicy = "closed"
    auth_mode: AuthMode = "secure_only"
    certificate_days: int | None = 365
    certificate_name: str | None = None

    def __post_init__(self) -> None:
        if self.relay not in get_args(RelayPolicy):
            raise ValueError(f"relay must be one of {list(get_args(RelayPolicy))}, not {self.relay!r}")
        if self.auth_mode not in get_args(AuthMode):
            raise ValueError(f"auth_mode must be one of {list(get_args(AuthMode))}, not {self.auth_mode!r}")
        days = self.certificate_days
        if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not -3650 <= days <= 3650):
            raise ValueError("certificate_days must be a whole number of days within ±3650, or None (no certificate)")
        name = self.certificate_name
        if name is not None and (not isinstance(name, str) or not _HOST_NAME.match(name)):
            raise ValueError(f"certificate_name must be a DNS name, not {name!r}")

    def as_dict(self) -> dict[str, object]:
        return {
            "relay": self.relay,
            "auth_mode": self.auth_mode,
            "certificate_days": self.certificate_days,
            "certificate_name": self.certificate_name,
        }


def edition_has_ssl(edition: str, major: int) -> bool:
    """Whether this MailEnable edition and major version can use SSL/TLS at all (module docstring)."""
    if edition == "Enterprise":
        return True
    return edition == "Professional" and major >= 9


@dataclass(frozen=True)
class SmtpReply:
    """What to send back for one line: the reply text, and whether to close or start TLS after it."""

    text: str
    close: bool = False
    start_tls: bool = False


class SmtpConversation:
    """One SMTP session's state: greeting done, transaction (MAIL FROM given), TLS on or off."""

    def __init__(
        self, *, host_name: str, peer: str, settings: SmtpSettings, local_domains: tuple[str, ...], tls_available: bool
    ) -> None:
        self.host_name = host_name
        self.peer = peer
        self.settings = settings
        self.local_domains = frozenset(d.lower() for d in local_domains)
        self.tls_available = tls_available
        self.tls = False
        self.sender: str | None = None

    def auth_offered(self) -> bool:
        mode = self.settings.auth_mode
        return mode == "always" or (mode == "secure_only" and self.tls)

    def ehlo_lines(self) -> list[str]:
        lines = [f"{self.host_name} [{self.peer}]"]
        if self.auth_offered():
            lines.append(f"AUTH {AUTH_MECHANISMS}")
        lines.append("SIZE 0")
        if self.tls_available and not self.tls:
            lines.append("STARTTLS")
        lines.append("HELP")
        return [f"250{'-' if i < len(lines) - 1 else ' '}{text}" for i, text in enumerate(lines)]

    def tls_started(self) -> None:
        """RFC 3207 §4.2: after the handshake the session starts over (no greeting, no transaction)."""
        self.tls = True
        self.sender = None

    def answer(self, line: str) -> SmtpReply:
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        argument = argument.strip()
        if verb == "EHLO":
            self.sender = None
            return SmtpReply("\r\n".join(self.ehlo_lines()))
        if verb == "HELO":
            self.sender = None
            return SmtpReply(f"250 {self.host_name}")
        if verb == "MAIL":
            match = _PATH.match(argument)
            if match is None or not argument.upper().startswith("FROM:"):
                return SmtpReply(SYNTAX_ERROR)
            self.sender = match.group(1)
            return SmtpReply(OK)
        if verb == "RCPT":
            match = _PATH.match(argument)
            if match is None or not argument.upper().startswith("TO:"):
                return SmtpReply(SYNTAX_ERROR)
            if self.sender is None:
                return SmtpReply(BAD_SEQUENCE)
            return SmtpReply(OK if self._may_receive(match.group(1)) else RELAY_DENIED)
        if verb == "STARTTLS":
            if not self.tls_available or self.tls:
                return SmtpReply(BAD_SEQUENCE)
            return SmtpReply(READY_FOR_TLS, start_tls=True)
        if verb == "RSET":
            self.sender = None
            return SmtpReply(OK)
        if verb == "NOOP":
            return SmtpReply(OK)
        if verb == "QUIT":
            return SmtpReply("221 Service closing transmission channel", close=True)
        return SmtpReply(BAD_SEQUENCE)

    def _may_receive(self, recipient: str) -> bool:
        # No session here is ever authenticated (AUTH is not modelled), so only the relay policy and the
        # recipient's domain decide: a local post office always receives, anything else only on an open relay.
        domain = recipient.rpartition("@")[2].strip().lower()
        return domain in self.local_domains or self.settings.relay == "open"
