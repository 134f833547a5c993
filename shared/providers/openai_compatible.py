"""Any OpenAI-compatible chat-completions server (NVIDIA NIM, OpenAI, vLLM...) over plain http.client.

The base URL comes from the catalog only. No redirects are followed (http.client follows none), the whole
call has a deadline that bounds the name lookup and every socket operation, and the body read is capped.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from shared.providers.aws import parse_chat_completion
from shared.providers.base import ProviderError, ProviderRequest, ProviderResult, provider_failed
from shared.providers.endpoints import resolve_host

# Returns the addresses the connection may use for a URL (raises to refuse it); None: connect by name.
AddressGuard = Callable[[str], list[str]]

# Name lookups run in a thread of their own so that the call's deadline bounds them: getaddrinfo takes no
# timeout, and a resolver that does not answer would hold the call for as long as the system's resolver retries.
# A lookup cut off keeps its thread until the resolver gives up, so each lookup has its own (daemon) thread: a
# shared pool of a few let the lookups of one endpoint whose name server does not answer hold up every later
# call, to any endpoint. The slots only bound how many such threads can pile up.
MAX_PENDING_LOOKUPS = 64
_LOOKUP_SLOTS = threading.BoundedSemaphore(MAX_PENDING_LOOKUPS)


class OpenAICompatibleProvider:
    name = "openai-compatible"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        max_response_bytes: int = 1_048_576,
        guard: AddressGuard | None = None,
    ):
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._max_response_bytes = max_response_bytes
        self._guard = guard

    def complete(self, request: ProviderRequest) -> ProviderResult:
        url = urlsplit(self._base_url + "/chat/completions")
        payload = json.dumps(
            {
                "model": request.model,
                "messages": [{"role": m.role, "content": m.content} for m in request.messages],
                "temperature": request.temperature,
                "max_tokens": request.max_tokens,
                **({"stop": list(request.stop)} if request.stop else {}),
                "stream": False,
            }
        ).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "confab"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        status, raw = self._post(url, payload, headers)
        if status != 200:
            raise _status_error(self.name, status)
        try:
            body: Any = json.loads(raw)
            return parse_chat_completion(body)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise provider_failed(self.name, 502, "malformed_response") from None

    def _post(self, url: Any, payload: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        deadline = _Deadline(self._timeout_s)
        conn = self._connection(url, self._addresses(url, deadline), deadline)
        try:
            conn.connect()
            # http.client reads the status line, the headers and the body through this socket; a timeout set
            # once would bound each receive but not their sum, and an upstream sending a byte at a time
            # would keep the call alive for as long as it liked.
            conn.sock = _DeadlineSocket(conn.sock, deadline)
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            conn.request("POST", path, body=payload, headers=headers)
            response = conn.getresponse()
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read1(65536):
                size += len(chunk)
                if size > self._max_response_bytes:
                    raise provider_failed(self.name, 502, "response_too_large")
                chunks.append(chunk)
            return response.status, b"".join(chunks)
        except ProviderError:
            raise
        except TimeoutError:
            raise provider_failed(self.name, 504, "deadline" if deadline.passed() else "timeout") from None
        except (ConnectionError, http.client.HTTPException, OSError):
            raise provider_failed(self.name, 503, "connection_failed") from None
        finally:
            conn.close()

    def _addresses(self, url: Any, deadline: _Deadline) -> list[str]:
        """The addresses to connect to, looked up within the deadline (those the guard checked, if any)."""
        if url.scheme not in ("https", "http"):
            raise provider_failed(self.name, 502, "bad_scheme")
        guard = self._guard
        host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = _lookup(
                lambda: guard(self._base_url) if guard is not None else resolve_host(host, port), deadline
            )
        except TimeoutError:
            raise provider_failed(self.name, 504, "deadline") from None
        except ValueError:
            # The guard refused the URL.
            raise provider_failed(self.name, 502, "endpoint_refused") from None
        except OSError:
            raise provider_failed(self.name, 503, "connection_failed") from None
        if not addresses:
            raise provider_failed(self.name, 502, "endpoint_refused")
        return addresses

    def _connection(self, url: Any, addresses: list[str], deadline: _Deadline) -> http.client.HTTPConnection:
        host = url.hostname or ""
        port = url.port or (443 if url.scheme == "https" else 80)
        conn: http.client.HTTPConnection
        if url.scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=self._timeout_s)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self._timeout_s)
        # Connect to an address looked up (those the guard checked: no second DNS answer), in the resolver's order,
        # the next after a failure (an IPv6 address from a subnet without IPv6), keeping Host and SNI as named.

        def create(_addr: Any, timeout: Any = None, source: Any = None) -> socket.socket:
            failure: OSError | None = None
            for address in addresses:
                try:
                    sock = socket.create_connection((address, port), deadline.left(), source)
                except TimeoutError:
                    raise
                except OSError as exc:
                    failure = exc
                    continue
                sock.settimeout(deadline.left())  # the TLS handshake that follows gets only what is left
                return sock
            assert failure is not None
            raise failure

        conn._create_connection = create  # type: ignore[attr-defined]
        return conn


def _lookup(resolve: Callable[[], list[str]], deadline: _Deadline) -> list[str]:
    """What `resolve` returns (or raises), run in a daemon thread of its own; TimeoutError at the deadline."""
    if not _LOOKUP_SLOTS.acquire(timeout=deadline.left()):
        raise TimeoutError("no lookup slot before the deadline")
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["addresses"] = resolve()
        except BaseException as exc:  # handed to the caller, if it still waits
            outcome["error"] = exc
        finally:
            _LOOKUP_SLOTS.release()
            done.set()

    try:
        threading.Thread(target=run, name="confab-dns", daemon=True).start()
    except BaseException:
        _LOOKUP_SLOTS.release()
        raise
    if not done.wait(deadline.left()):
        raise TimeoutError("the name lookup did not finish before the deadline")
    if "error" in outcome:
        raise outcome["error"]
    addresses: list[str] = outcome["addresses"]
    return addresses


class _Deadline:
    """The end of a call. PROVIDER_TIMEOUT_SECONDS is both the overall deadline and the longest single wait."""

    def __init__(self, seconds: float):
        self._end = time.monotonic() + seconds

    def passed(self) -> bool:
        return time.monotonic() >= self._end

    def left(self) -> float:
        """Seconds until the deadline, to use as the next socket operation's timeout; TimeoutError once passed."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError("provider deadline passed")
        return left


class _DeadlineSocket:
    """A connected socket as http.client uses it, whose timeout becomes the time left before each send and receive."""

    def __init__(self, sock: socket.socket, deadline: _Deadline):
        self._sock = sock
        self._deadline = deadline

    def sendall(self, data: bytes) -> None:
        self._sock.settimeout(self._deadline.left())
        self._sock.sendall(data)

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def close(self) -> None:
        # The socket really closes once the response's reader is closed too (makefile keeps a reference).
        self._sock.close()


class _DeadlineReader(io.RawIOBase):
    """The socket's raw reads (one receive each), each given only the time left."""

    def __init__(self, sock: socket.socket, deadline: _Deadline):
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(self._deadline.left())
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


def _status_error(provider: str, status: int) -> ProviderError:
    if status in (408, 504):
        return provider_failed(provider, 504, f"http_{status}")
    if status in (429, 503):
        return provider_failed(provider, 503, f"http_{status}")
    return provider_failed(provider, 502, f"http_{status}")
