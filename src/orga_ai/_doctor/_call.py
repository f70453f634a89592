"""``orga-ai doctor --call``: after the per-server checks, place real calls (relay-only first, then with every
candidate) and report whether media flowed each way and through which candidate type. Each call consumes one token.
Needs the ``orga-ai[realtime]`` extra."""

from __future__ import annotations

import math
import time
from array import array
from typing import TYPE_CHECKING

from .._exceptions import OrgaAIError
from ._report import Check, Report

if TYPE_CHECKING:
    from .._config import Settings

__all__ = ["check_call"]

_TONE_SECONDS = 1.0
_LISTEN_SECONDS = 2.5


def _probe_tone() -> bytes:
    step = 2 * math.pi * 440 / 48000
    return array("h", (int(8000 * math.sin(step * i)) for i in range(int(48000 * _TONE_SECONDS)))).tobytes()


async def _one(report: Report, settings: Settings, timeout: float, relay_only: bool) -> bool:
    from .._client import AsyncOrgaAI
    from ..realtime._session import run_call

    name = "call, relay only" if relay_only else "call, all candidates"
    started = time.perf_counter()
    try:
        async with AsyncOrgaAI(api_key=settings.api_key.reveal(), base_url=settings.base_url, timeout=timeout,
                               max_retries=0) as orga:
            result = await run_call(orga.realtime.connect(relay_only=relay_only), duration=_LISTEN_SECONDS,
                                    input_pcm=_probe_tone())
    except OrgaAIError as exc:
        phase = getattr(exc, "phase", None)
        advice = ("no TURN relay works for this host: clients behind strict NATs or firewalls will not connect"
                  if relay_only else "no call can be placed from this host")
        report.add(Check("call", name, "fail", time.perf_counter() - started,
                         f"{type(exc).__name__} ({phase}): {exc.message}", advice, blocking=not relay_only,
                         data={"phase": phase, "status": exc.status_code, "requestId": exc.request_id}))
        return False
    media = result.stats
    sent = media.get("remotePacketsReceived")
    out_ok = bool(sent) or result.audio_out_seconds > 0.5  # Orga's receiver reports, or the audio it sent back
    in_ok = result.audio_out_seconds > 0
    detail = (f"connected in {result.connected_ms:.0f} ms over {result.selected_candidate_type} "
              f"(Orga's side {result.remote_candidate_type}); media out: {media.get('packetsSent', 0)} packets"
              f"{f', {sent} received by Orga' if sent is not None else ''}; media in: "
              f"{result.audio_out_seconds:.1f} s of audio")
    data = {"conversationId": result.conversation_id, "candidateType": result.selected_candidate_type,
            "remoteCandidateType": result.remote_candidate_type, "mediaOut": out_ok, "mediaIn": in_ok,
            "timingsMs": result.timings.to_ms(), "media": media}
    if out_ok and in_ok:
        report.add(Check("call", name, "ok", time.perf_counter() - started, detail, data=data))
        return True
    which = " and ".join(w for w, ok in (("out", out_ok), ("in", in_ok)) if not ok)
    report.add(Check("call", name, "fail", time.perf_counter() - started, f"{detail}: no media {which}",
                     "the call connects but media does not flow: a firewall passing the handshake but not RTP?",
                     blocking=not relay_only, data=data))
    return False


async def check_call(report: Report, settings: Settings, timeout: float) -> None:
    """Relay-only first (the path every client can fall back to), then every candidate type."""
    try:
        from ..realtime import _require

        _require()
    except ImportError as exc:
        report.add(Check("call", "call", "skip", detail=str(exc), blocking=False))
        return
    await _one(report, settings, timeout, relay_only=True)
    await _one(report, settings, timeout, relay_only=False)
