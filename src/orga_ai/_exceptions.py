"""The error tree of the SDK.

    OrgaAIError                      every error this package raises
    ├── OrgaAIConfigurationError     bad or missing settings, raised at construction (also a ValueError)
    ├── OrgaAIAuthenticationError    401: the API key (token step) or the ephemeral token (ICE step) was refused
    ├── OrgaAIPermissionError        403: Orga Cloud saw no usable Authorization header
    ├── OrgaAIBadRequestError        400, 404, 409, 422 and other 4xx: the request itself is wrong
    ├── OrgaAIRateLimitError         429: Orga Cloud asks us to slow down (``retry_after`` in seconds)
    └── OrgaAIServerError            5xx and every other failure to get a config from Orga Cloud
        ├── OrgaAITimeoutError       a request or the overall deadline ran out
        ├── OrgaAIConnectionError    the connection could not be made or broke
        └── OrgaAIInvalidResponseError  Orga Cloud answered, but not with what the contract promises

The realtime client (``orga_ai.realtime``, the ``orga-ai[realtime]`` extra) has a branch of its own; each error says in
``phase`` which step of the call failed (``config``, ``gather``, ``calls``, ``ice``, ``channel``):

    OrgaAIError
    └── OrgaAIRealtimeError               a call could not be placed, or broke
        ├── OrgaAIRealtimeTimeoutError    a connect step ran out of time (gathering, POST /calls, ICE + DTLS + channel)
        ├── OrgaAIRealtimeRefusedError    POST /calls (or your route) answered non-2xx: status_code, request_id, code
        ├── OrgaAIRealtimeInvalidAnswerError  a 2xx without conversation_id or answer, or an SDP the peer refused
        ├── OrgaAIRealtimeConnectionError     POST /calls (or the route) could not be reached, or broke
        ├── OrgaAIRealtimeICEError        no candidate pair works: ICE failed
        └── OrgaAIRealtimeChannelClosedError  the events channel or the call is closed

``OrgaAIAuthenticationError`` and ``OrgaAIServerError`` are the two classes of the Node SDK; code written against them
keeps working. No message or attribute ever carries the API key or a token.
"""

from __future__ import annotations

from typing import Literal

Step = Literal["token", "ice"]

__all__ = [
    "OrgaAIAuthenticationError",
    "OrgaAIBadRequestError",
    "OrgaAIConfigurationError",
    "OrgaAIConnectionError",
    "OrgaAIError",
    "OrgaAIInvalidResponseError",
    "OrgaAIPermissionError",
    "OrgaAIRateLimitError",
    "OrgaAIRealtimeChannelClosedError",
    "OrgaAIRealtimeConnectionError",
    "OrgaAIRealtimeError",
    "OrgaAIRealtimeICEError",
    "OrgaAIRealtimeInvalidAnswerError",
    "OrgaAIRealtimeRefusedError",
    "OrgaAIRealtimeTimeoutError",
    "OrgaAIServerError",
    "OrgaAITimeoutError",
    "Step",
    "error_for_status",
]


class OrgaAIError(Exception):
    """Base class of every error raised by ``orga_ai``.

    Attributes:
        message: what went wrong, in words, with the step that failed.
        status_code: the HTTP status Orga Cloud answered with, or None when there was no answer (``status`` is the
            same value, under its older name).
        code: Orga's machine-readable error code or type when it sent one, else None.
        request_id: the upstream ``x-request-id`` of the failing response, when known.
        step: ``"token"`` or ``"ice"`` for errors of an exchange, else None.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        step: Step | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status
        self.code = code
        self.request_id = request_id
        self.step = step

    @property
    def status(self) -> int | None:
        """The HTTP status: an alias of :attr:`status_code`."""
        return self.status_code

    @status.setter
    def status(self, value: int | None) -> None:
        self.status_code = value

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        parts = [repr(self.message)]
        for name in ("status_code", "code", "request_id", "step"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class OrgaAIConfigurationError(OrgaAIError, ValueError):
    """A setting is missing or unsafe (no API key, a plain-http base URL to a remote host, ...)."""


class OrgaAIAuthenticationError(OrgaAIError):
    """Orga Cloud answered 401: the API key, or the ephemeral token, is invalid, expired or already used."""


class OrgaAIPermissionError(OrgaAIError):
    """Orga Cloud answered 403: the request reached it without a usable Authorization header."""


class OrgaAIBadRequestError(OrgaAIError):
    """Orga Cloud refused the request as malformed (400, 404, 409, 422 and other 4xx). Never retried."""


class OrgaAIRateLimitError(OrgaAIError):
    """Orga Cloud answered 429. ``retry_after`` is its advice in seconds, or None when it gave none."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = 429,
        code: str | None = None,
        request_id: str | None = None,
        step: Step | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id, step=step)
        self.retry_after = retry_after


class OrgaAIServerError(OrgaAIError):
    """Orga Cloud failed (5xx), or no usable session config could be had from it for another reason."""


class OrgaAITimeoutError(OrgaAIServerError):
    """A request took longer than ``timeout``, or the whole call longer than its ``deadline``."""


class OrgaAIConnectionError(OrgaAIServerError):
    """The connection to Orga Cloud could not be made, or broke before a whole answer arrived."""


class OrgaAIInvalidResponseError(OrgaAIServerError):
    """Orga Cloud answered with a body that breaks the contract: not JSON, wrong types, missing fields, too big."""


RealtimePhase = Literal["config", "gather", "calls", "ice", "channel"]


class OrgaAIRealtimeError(OrgaAIError):
    """A realtime call could not be placed, or broke. ``phase`` names the step; ``conversation_id`` is set once Orga
    answered ``POST /v1/realtime/calls``. Never carries the ephemeral token or a TURN credential."""

    def __init__(
        self,
        message: str,
        *,
        phase: RealtimePhase,
        conversation_id: str | None = None,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)
        self.phase = phase
        self.conversation_id = conversation_id

    def __repr__(self) -> str:
        parts = [repr(self.message), f"phase={self.phase!r}"]
        for name in ("status_code", "code", "request_id", "conversation_id"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class OrgaAIRealtimeTimeoutError(OrgaAIRealtimeError):
    """A step of connecting ran out of time: ICE gathering, ``POST /v1/realtime/calls`` (10 s), or the wait for the
    connection and the events channel."""


class OrgaAIRealtimeRefusedError(OrgaAIRealtimeError):
    """``POST /v1/realtime/calls`` (or, with ``phase="config"``, your session-config route) answered non-2xx.

    ``status_code`` is the HTTP status, ``request_id`` Orga's ``x-request-id``, ``code`` its error code when it sent
    one, ``retry_after`` the seconds of a ``Retry-After`` header (429, 503), else None."""

    def __init__(
        self,
        message: str,
        *,
        phase: RealtimePhase,
        status: int,
        conversation_id: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message, phase=phase, conversation_id=conversation_id, status=status, code=code, request_id=request_id
        )
        self.retry_after = retry_after


class OrgaAIRealtimeInvalidAnswerError(OrgaAIRealtimeError):
    """Orga (or the route) answered 2xx with a body that breaks the contract: not JSON, no ``conversation_id`` or
    ``answer``, or an SDP answer the peer connection refused."""


class OrgaAIRealtimeConnectionError(OrgaAIRealtimeError):
    """``POST /v1/realtime/calls`` (or the route) could not be reached, or the connection broke before an answer."""


class OrgaAIRealtimeICEError(OrgaAIRealtimeError):
    """ICE failed: no candidate pair between this host and Orga works (firewall, no TURN, refused TURN credentials)."""


class OrgaAIRealtimeChannelClosedError(OrgaAIRealtimeError):
    """The ``orga-realtime-client-events`` channel, or the whole call, is closed: nothing more can be sent."""


def error_for_status(
    status: int,
    message: str,
    *,
    code: str | None = None,
    request_id: str | None = None,
    step: Step | None = None,
    retry_after: float | None = None,
) -> OrgaAIError:
    """Map one HTTP status to its error class: the only place in the package where that mapping lives."""
    if status == 429:
        return OrgaAIRateLimitError(
            message, retry_after=retry_after, status=status, code=code, request_id=request_id, step=step
        )
    cls: type[OrgaAIError]
    if status == 401:
        cls = OrgaAIAuthenticationError
    elif status == 403:
        cls = OrgaAIPermissionError
    elif status == 408:
        cls = OrgaAITimeoutError
    elif 400 <= status < 500:
        cls = OrgaAIBadRequestError
    else:
        cls = OrgaAIServerError
    return cls(message, status=status, code=code, request_id=request_id, step=step)
