"""Per-host counters (what happened) and faults (what should go wrong), readable and settable from Python.

Both are touched from the fleet's event-loop thread and read/set from test threads: plain attribute reads
and writes are atomic under the GIL; the one read-modify-write shared with tests goes through a lock.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field


@dataclass
class HostCounters:
    """What one host has seen since start (or the last reset)."""

    requests: int = 0  # every HTTP request, including 401 handshakes and refused ones
    soap_requests: int = 0  # requests that carried a WS-Man envelope and were authenticated
    encrypted_requests: int = 0  # of those, the ones that arrived sealed (multipart/encrypted)
    plaintext_refused: int = 0  # unencrypted SOAP over NTLM/HTTP, refused like AllowUnencrypted=false
    auth_failures: int = 0  # NTLM or Basic logins rejected
    ntlm_logins: int = 0  # completed NTLM handshakes
    basic_logins: int = 0  # requests authenticated with Basic
    shells_created: int = 0
    commands_run: int = 0
    faults_returned: int = 0  # SOAP faults sent
    connections: int = 0  # TCP connections accepted
    dropped_connections: int = 0  # connections cut by the drop fault

    def snapshot(self) -> HostCounters:
        return dataclasses.replace(self)

    def reset(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, 0)


@dataclass
class HostFaults:
    """Faults to inject into one host.

    - `latency_s`: added (really slept) before every request is handled.
    - `reject_logins`: every login fails (401), as with a wrong password; established NTLM connections
      keep working, as on Windows.
    - `receive_timeouts`: the next N Receives answer the w:TimedOut fault at once.
    - `drop_connections`: the next N requests that address an existing shell get the TCP connection cut
      with no reply.
    - host down is not a flag: use `HostServer.set_down()`, which really closes the listeners.
    """

    latency_s: float = 0.0
    reject_logins: bool = False
    receive_timeouts: int = 0
    drop_connections: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def take_receive_timeout(self) -> bool:
        with self._lock:
            if self.receive_timeouts > 0:
                self.receive_timeouts -= 1
                return True
            return False

    def take_drop(self) -> bool:
        with self._lock:
            if self.drop_connections > 0:
                self.drop_connections -= 1
                return True
            return False

    def clear(self) -> None:
        with self._lock:
            self.latency_s = 0.0
            self.reject_logins = False
            self.receive_timeouts = 0
            self.drop_connections = 0
