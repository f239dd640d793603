"""WS-Management SOAP: parsing requests (defusedxml) and writing replies and faults as Windows does."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

NS_S = "http://www.w3.org/2003/05/soap-envelope"
NS_A = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_W = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_P = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"
NS_RSP = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
NS_X = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
NS_F = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"

ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
ACTION_CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
ACTION_DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
ACTION_COMMAND = NS_RSP + "/Command"
ACTION_SEND = NS_RSP + "/Send"
ACTION_RECEIVE = NS_RSP + "/Receive"
ACTION_SIGNAL = NS_RSP + "/Signal"
RESOURCE_CMD = NS_RSP + "/cmd"
FAULT_ACTION_WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
FAULT_ACTION_ADDRESSING = "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault"

# Windows' MaxEnvelopeSizekb default is 500: requests above it are refused.
MAX_REQUEST_ENVELOPE = 500 * 1024

_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> float | None:
    """xs:duration (PT20S, PT20.000S, P0DT0H0M20S) to seconds; None when it is not one."""
    match = _DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        return None
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def format_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


class WsmanFault(Exception):
    """A SOAP fault as Windows' WinRM service returns it (HTTP 500)."""

    def __init__(
        self,
        code: int,
        subcode: str,
        reason: str,
        *,
        receiver: bool = False,
        action: str = FAULT_ACTION_WSMAN,
        detail: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.receiver = receiver
        self.action = action
        self.detail = detail


def fault_invalid_xml() -> WsmanFault:
    return WsmanFault(
        2150858819,
        "w:SchemaValidationError",
        "The WS-Management service cannot process the request because the XML is invalid.",
    )


def fault_envelope_too_large() -> WsmanFault:
    return WsmanFault(
        2150858817,
        "w:EncodingLimit",
        "The WS-Management service cannot process the request because the request envelope is larger than "
        "MaxEnvelopeSizekb allows.",
        detail="http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/MaxEnvelopeSize",
    )


def fault_missing_header() -> WsmanFault:
    return WsmanFault(
        2150858769,
        "a:MessageInformationHeaderRequired",
        "The WS-Management service cannot process the request. The request does not have all the expected SOAP "
        "headers.",
        action=FAULT_ACTION_ADDRESSING,
    )


def fault_action_not_supported(action: str) -> WsmanFault:
    return WsmanFault(
        2150858771,
        "a:ActionNotSupported",
        "The WS-Management service does not support the action specified in the request.",
        action=FAULT_ACTION_ADDRESSING,
        detail=action,
    )


def fault_resource_not_found(resource_uri: str) -> WsmanFault:
    return WsmanFault(
        2150858752,
        "w:DestinationUnreachable",
        f"The WS-Management service cannot process the request. The resource URI ({resource_uri}) was not found "
        "in the WS-Management catalog.",
    )


def fault_shell_not_found(shell_id: str) -> WsmanFault:
    return WsmanFault(
        2150858843,
        "w:InvalidSelectors",
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not found "
        "on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on "
        "the server. Provide the correct ShellId or create a new shell and retry the operation. ",
    )


def fault_missing_shell_selector() -> WsmanFault:
    return WsmanFault(
        2150858843,
        "w:InvalidSelectors",
        "The WS-Management service cannot process the request because the request contained invalid selectors "
        "for the resource. ",
        detail="http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors",
    )


def fault_timed_out() -> WsmanFault:
    return WsmanFault(
        2150858793,
        "w:TimedOut",
        "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.  ",
        receiver=True,
    )


def fault_access_denied() -> WsmanFault:
    return WsmanFault(5, "w:AccessDenied", "Access is denied. ")


def fault_invalid_parameter() -> WsmanFault:
    return WsmanFault(87, "w:InvalidParameter", "The parameter is incorrect. ")


def fault_internal_error() -> WsmanFault:
    return WsmanFault(
        2150858815, "w:InternalError", "The WS-Management service cannot process the request. ", receiver=True
    )


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


@dataclass(frozen=True)
class WsmanRequest:
    """The parts of a WS-Management request the shell service needs."""

    action: str
    message_id: str
    resource_uri: str
    selectors: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    operation_timeout_s: float | None = None
    max_envelope_size: int = 153600
    body: ET.Element | None = None


def parse_request(data: bytes) -> WsmanRequest:
    """Parse a SOAP envelope; raise WsmanFault for anything Windows would refuse."""
    if len(data) > MAX_REQUEST_ENVELOPE:
        raise fault_envelope_too_large()
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, DefusedXmlException, ValueError, UnicodeError) as exc:
        raise fault_invalid_xml() from exc
    if root.tag != _q(NS_S, "Envelope"):
        raise fault_invalid_xml()
    header = root.find(_q(NS_S, "Header"))
    body_el = root.find(_q(NS_S, "Body"))
    if header is None or body_el is None:
        raise fault_missing_header()

    def text(ns: str, tag: str) -> str | None:
        el = header.find(_q(ns, tag))
        return None if el is None or el.text is None else el.text.strip()

    action = text(NS_A, "Action")
    message_id = text(NS_A, "MessageID")
    resource_uri = text(NS_W, "ResourceURI")
    if not action or not message_id:
        raise fault_missing_header()
    selectors: dict[str, str] = {}
    selector_set = header.find(_q(NS_W, "SelectorSet"))
    if selector_set is not None:
        for sel in selector_set.findall(_q(NS_W, "Selector")):
            name = sel.get("Name")
            if name:
                selectors[name] = (sel.text or "").strip()
    options: dict[str, str] = {}
    option_set = header.find(_q(NS_W, "OptionSet"))
    if option_set is not None:
        for opt in option_set.findall(_q(NS_W, "Option")):
            name = opt.get("Name")
            if name:
                options[name.upper()] = (opt.text or "").strip()
    timeout_text = text(NS_W, "OperationTimeout")
    timeout = parse_duration(timeout_text) if timeout_text else None
    max_env_text = text(NS_W, "MaxEnvelopeSize")
    max_env = 153600
    if max_env_text:
        try:
            max_env = int(max_env_text)
        except ValueError as exc:
            raise fault_invalid_parameter() from exc
        if max_env < 8192:
            raise fault_invalid_parameter()
    children = list(body_el)
    return WsmanRequest(
        action=action,
        message_id=message_id,
        resource_uri=resource_uri or "",
        selectors=selectors,
        options=options,
        operation_timeout_s=timeout,
        max_envelope_size=max_env,
        body=children[0] if children else None,
    )


def extract_message_id(data: bytes) -> str | None:
    """Best effort: the MessageID of a request that failed to parse, so the fault can relate to it."""
    match = re.search(rb"<(?:\w+:)?MessageID[^>]*>\s*([^<\s]{1,100})\s*<", data[:65536])
    return match.group(1).decode("ascii", "replace") if match else None


_ENVELOPE_OPEN = (
    '<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" '
    'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">'
)


def envelope(action: str, relates_to: str | None, body: str) -> bytes:
    """A reply envelope: every reply names a new MessageID and relates to the request's."""
    relates = f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>" if relates_to else ""
    text = (
        f"{_ENVELOPE_OPEN}<s:Header><a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID><a:To>{ANONYMOUS}</a:To>{relates}"
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
    return text.encode("utf-8")


def fault_envelope(fault: WsmanFault, relates_to: str | None, machine: str) -> bytes:
    code = "s:Receiver" if fault.receiver else "s:Sender"
    detail = f"<w:FaultDetail>{escape(fault.detail)}</w:FaultDetail>" if fault.detail else ""
    body = (
        f"<s:Fault><s:Code><s:Value>{code}</s:Value><s:Subcode><s:Value>{fault.subcode}</s:Value></s:Subcode>"
        f'</s:Code><s:Reason><s:Text xml:lang="en-US">{escape(fault.reason)}</s:Text></s:Reason><s:Detail>'
        f'<f:WSManFault xmlns:f="{NS_F}" Code="{fault.code}" Machine={quoteattr(machine)}>'
        f"<f:Message>{escape(fault.reason)}</f:Message></f:WSManFault>{detail}</s:Detail></s:Fault>"
    )
    return envelope(fault.action, relates_to, body)
