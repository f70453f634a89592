"""``orga-ai call``: place one realtime call from the terminal, play a WAV into it, record the agent, and show the
transcript live (or one JSON object with ``--json``). Exit 0 when the call connected and audio came back, 1 when not
(with a one-line reason), 2 on a usage error or a missing extra.

With ``ORGA_API_KEY`` (and ``ORGA_BASE_URL``) it mints its own session config; with ``--route URL`` it asks your
session-config route instead, as a device without the key would. Importing this module costs nothing: aiortc loads
when the call starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from .._cliargs import header, seconds

__all__ = ["add_parser", "run"]

from ._wire import DEFAULT_MODEL, DEFAULT_TEMPERATURE

DEFAULT_DURATION = 10.0
"""Seconds a call lasts after connecting when there is no --input (with one: its length plus 5 s)."""


def add_parser(subparsers: Any) -> None:
    """Register ``orga-ai call``."""
    parser = subparsers.add_parser(
        "call",
        help="place a realtime call: play a WAV in, record the agent, print the transcript",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="The token and TURN credentials are never printed. Needs pip install 'orga-ai[realtime]'.",
    )
    add = parser.add_argument
    add("--input", metavar="FILE.wav", help="a 16-bit PCM WAV played into the call (then silence)")
    add("--output", metavar="FILE.wav", help="write the agent's audio here (48 kHz mono)")
    add("--duration", type=seconds(3600), default=None,
        help=f"seconds after connecting (default: --input's length + 5, else {DEFAULT_DURATION:g})")
    add("--voice", help="the voice (default Orga's)")
    add("--model", help=f"the model (default {DEFAULT_MODEL})")
    add("--instructions", help="the agent's instructions")
    add("--temperature", type=float, default=None, help=f"0 to 2 (default {DEFAULT_TEMPERATURE:g})")
    add("--transcribe", action="store_true", help="ask for transcriptions (return_transcription)")
    add("--relay-only", action="store_true", help="use TURN relay candidates only")
    add("--route", metavar="URL", help="get the session config from your route instead of ORGA_API_KEY")
    add("--header", dest="headers", action="append", type=header, default=[], metavar="'NAME: VALUE'",
        help="a header to send to --route (repeatable; never printed)")
    add("--base-url", help="Orga Cloud (default ORGA_BASE_URL, else https://api.orga-ai.com)")
    add("--connect-timeout", type=seconds(3600), default=20.0, help="seconds until the call must be up (default 20)")
    add("--json", action="store_true", help="print one JSON object instead of the live transcript")
    parser.set_defaults(handler=run)


def _live(event: Any) -> None:
    from . import ErrorEvent, InputTranscriptionCompleted, ResponseOutputItemDone, SessionCreated, SessionUpdated

    if isinstance(event, SessionCreated):
        s = event.session
        print(f"[session] voice {s.voice}, model {s.model}, temperature {s.temperature}", flush=True)
    elif isinstance(event, SessionUpdated):
        print(f"[session] updated: voice {event.session.voice}", flush=True)
    elif isinstance(event, InputTranscriptionCompleted):
        print(f"you:   {event.transcript}", flush=True)
    elif isinstance(event, ResponseOutputItemDone):
        print(f"agent: {event.text}", flush=True)
    elif isinstance(event, ErrorEvent):
        print(f"[error] {event.message}", flush=True)
    else:
        print(f"[{event.type or 'message'}]", flush=True)


async def _call(args: argparse.Namespace, duration: float) -> Any:
    from . import connect
    from ._session import run_call

    options: dict[str, Any] = {
        "voice": args.voice,
        "model": args.model,
        "instructions": args.instructions,
        "temperature": args.temperature,
        "return_transcription": True if args.transcribe else None,
        "relay_only": args.relay_only,
        "connect_timeout": args.connect_timeout,
    }
    on_event = None if args.json else _live
    if args.route:
        connecting = connect(args.route, base_url=args.base_url, headers=dict(args.headers), **options)
        return await run_call(connecting, duration=duration, input_wav=args.input, output_wav=args.output,
                              on_event=on_event)
    from .._client import AsyncOrgaAI

    async with AsyncOrgaAI(base_url=args.base_url) as orga:
        return await run_call(orga.realtime.connect(**options), duration=duration, input_wav=args.input,
                              output_wav=args.output, on_event=on_event)


def run(args: argparse.Namespace) -> int:
    """Place the call; print the transcript or the JSON summary; the exit status says whether audio came back."""
    from .._exceptions import OrgaAIConfigurationError, OrgaAIError
    from . import _require

    if args.headers and not args.route:
        print("orga-ai call: --header goes with --route URL", file=sys.stderr)
        return 2
    try:
        _require()
    except ImportError as exc:
        print(f"orga-ai call: {exc}", file=sys.stderr)
        return 2
    duration = args.duration
    if args.input:
        from ._audio import read_wav

        try:
            pcm, rate, channels = read_wav(args.input)
        except (OSError, ValueError, EOFError) as exc:
            print(f"orga-ai call: cannot read --input: {exc}", file=sys.stderr)
            return 2
        if duration is None:
            duration = len(pcm) / 2 / channels / rate + 5.0
    duration = DEFAULT_DURATION if duration is None else duration
    try:
        result = asyncio.run(_call(args, duration))
    except OrgaAIConfigurationError as exc:
        print(f"orga-ai call: {exc.message}", file=sys.stderr)
        return 2
    except OrgaAIError as exc:
        reason = f"{type(exc).__name__}: {exc.message}"
        if args.json:
            print(json.dumps({"ok": False, "error": reason, "status": exc.status_code, "requestId": exc.request_id}))
        print(f"orga-ai call: {reason}", file=sys.stderr)
        return 1
    ok = result.audio_out_seconds > 0
    if args.json:
        print(json.dumps({**result.to_json(), "ok": ok}, ensure_ascii=False))
    else:
        print(
            f"--- conversation {result.conversation_id}: connected in {result.connected_ms} ms over "
            f"{result.selected_candidate_type}; {result.audio_in_seconds:.1f} s of audio in, "
            f"{result.audio_out_seconds:.1f} s out",
            flush=True,
        )
    if not ok:
        print(f"orga-ai call: the call connected but no audio came back in {duration:g} s", file=sys.stderr)
        return 1
    return 0
