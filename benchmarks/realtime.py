"""Figures of ``orga_ai.realtime`` on this machine, printed (nothing is asserted): time from ``connect()`` to
``connected`` and to ``session.created`` over host candidates and relay-only through a local coturn; the audio round
trip through the emulator's echo; CPU and memory of one call; how many concurrent calls one process holds with audio
flowing both ways.

    .venv/bin/python benchmarks/realtime.py [--calls 10] [--max-concurrent 64]

The emulator (its aiortc peers included) runs in a child process, so the client's CPU and memory are its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from orga_ai import AsyncOrgaAI  # noqa: E402
from tests.support import free_port, run_coturn  # noqa: E402

EMULATOR = """
import sys, time
from orga_ai.emulator import EmulatorConfig
from orga_ai.testing import run_emulator
cfg = EmulatorConfig(stun_urls=(sys.argv[1],), turn_urls=(sys.argv[2],), turn_secret=sys.argv[3], quota_per_minute=0)
with run_emulator(cfg, port=int(sys.argv[4])) as emu:
    print(emu.base_url, flush=True)
    sys.stdin.read()
"""


def tone(seconds: float, freq: float = 440.0, rate: int = 48000) -> bytes:
    step = 2 * math.pi * freq / rate
    return array("h", (int(12000 * math.sin(step * i)) for i in range(int(seconds * rate)))).tobytes()


def rms(pcm: bytes) -> float:
    samples = array("h")
    samples.frombytes(pcm)
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


def pss_mib() -> float | None:
    try:
        text = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return None


EMULATOR_PID: list[int] = []


def emulator_cpu_seconds() -> float:
    """CPU seconds of the emulator's process (its aiortc peers decode and re-encode every echoed frame)."""
    if not EMULATOR_PID:
        return 0.0
    fields = Path(f"/proc/{EMULATOR_PID[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def summary(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, n={len(ordered)}"


async def connect_times(orga: AsyncOrgaAI, calls: int, relay_only: bool) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"connected": [], "session_created": []}
    for _ in range(calls):
        async with orga.realtime.connect(relay_only=relay_only) as call:
            await call.wait_for("session.created")
            t = call.timings
            if t.connected is not None and t.session_created is not None:
                out["connected"].append(t.connected)
                out["session_created"].append(t.session_created)
    return out


async def echo_latency(orga: AsyncOrgaAI, rounds: int) -> list[float]:
    """From queueing a tone burst (after silence) to the first loud 20 ms of it coming back."""
    latencies: list[float] = []
    async with orga.realtime.connect() as call:
        stream = call.audio()
        await asyncio.sleep(1.0)  # let the jitter buffer settle on silence
        for _ in range(rounds):
            await call.wait_audio_sent()
            await asyncio.sleep(0.4)
            sent = time.monotonic()
            call.send_audio(tone(0.2))
            async for chunk in stream:
                if chunk.received_at >= sent and rms(chunk.pcm) > 2000:
                    latencies.append(chunk.received_at - sent)
                    break
    return latencies


async def one_call_cost(orga: AsyncOrgaAI, seconds: float) -> tuple[float, float | None, float | None]:
    """CPU seconds per second of call (audio both ways), and PSS before / during."""
    before = pss_mib()
    async with orga.realtime.connect() as call:
        call.send_audio(tone(seconds))
        stream = call.audio()
        await asyncio.sleep(0.5)
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        deadline = wall0 + seconds - 1
        async for chunk in stream:
            if chunk.received_at > deadline:
                break
        cpu = (cpu_seconds() - cpu0) / (time.monotonic() - wall0)
        during = pss_mib()
    return cpu, before, during


async def concurrent(orga: AsyncOrgaAI, count: int, seconds: float = 4.0) -> tuple[int, float, float | None]:
    """Open ``count`` calls at once, stream audio both ways for ``seconds``; how many kept audio flowing (>= 80 % of
    the expected frames back), the process's CPU share, and PSS."""
    ratios: list[float] = []
    sent: list[float] = []

    async def run() -> bool:
        try:
            async with orga.realtime.connect(connect_timeout=60) as call:
                await call.wait_for("session.created", timeout=30)
                received, went = call.audio_out_seconds, call.audio_in_seconds
                call.send_audio(tone(seconds))
                await asyncio.sleep(seconds)
                ratios.append((call.audio_out_seconds - received) / seconds)
                sent.append((call.audio_in_seconds - went) / seconds)
                return ratios[-1] >= 0.8
        except Exception as exc:  # noqa: BLE001 - a figure: count it as a failed call
            print(f"    call failed: {type(exc).__name__}: {exc}", flush=True)
            return False

    cpu0, wall0, emu0 = cpu_seconds(), time.monotonic(), emulator_cpu_seconds()
    results = await asyncio.gather(*(run() for _ in range(count)))
    if ratios:
        print(f"    audio back per call: median {statistics.median(ratios) * 100:.0f} %, "
              f"min {min(ratios) * 100:.0f} % of real time; sent by this process: median "
              f"{statistics.median(sent) * 100:.0f} %; emulator process "
              f"{(emulator_cpu_seconds() - emu0) / (time.monotonic() - wall0) * 100:.0f} % CPU", flush=True)
    return sum(results), (cpu_seconds() - cpu0) / (time.monotonic() - wall0), pss_mib()


async def main(args: argparse.Namespace, base_url: str, api_key: str) -> dict[str, object]:
    figures: dict[str, object] = {}
    async with AsyncOrgaAI(api_key=api_key, base_url=base_url, max_retries=0) as orga:
        async with orga.realtime.connect():  # warm-up: imports, codecs
            pass
        for mode, relay in (("host", False), ("relay", True)):
            times = await connect_times(orga, args.calls, relay)
            print(f"{mode:5} connect() -> connected:       {summary(times['connected'])}", flush=True)
            print(f"{mode:5} connect() -> session.created: {summary(times['session_created'])}", flush=True)
            figures[mode] = {k: [round(v * 1000, 1) for v in vs] for k, vs in times.items()}
        latencies = await echo_latency(orga, args.rounds)
        print(f"echo round trip (send_audio -> first loud frame back): {summary(latencies)}", flush=True)
        figures["echo_ms"] = [round(v * 1000, 1) for v in latencies]
        cpu, before, during = await one_call_cost(orga, 6.0)
        print(f"one call, audio both ways: {cpu * 100:.1f} % of one core; PSS {before:.0f} -> {during:.0f} MiB",
              flush=True)
        figures["one_call"] = {"cpu_share": round(cpu, 3), "pss_before_mib": before, "pss_during_mib": during}
        best = 0
        for count in (c for c in (2, 4, 6, 8, 12, 16, 24, 32, 48, 64) if c <= args.max_concurrent):
            ok, share, pss = await concurrent(orga, count)
            print(f"{count:4} concurrent calls: {ok} with audio flowing; {share * 100:.0f} % CPU; PSS {pss:.0f} MiB",
                  flush=True)
            figures[f"concurrent_{count}"] = {"ok": ok, "cpu_share": round(share, 2), "pss_mib": pss}
            if ok < count:
                break
            best = count
        print(f"concurrent calls held with audio flowing: {best} (the largest step where every call got at least "
              f"80 % of its audio back)", flush=True)
        figures["concurrent_held"] = best
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10, help="calls per connect-time figure")
    parser.add_argument("--rounds", type=int, default=10, help="tone bursts for the echo latency")
    parser.add_argument("--max-concurrent", type=int, default=64)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    arguments = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}", flush=True)
    with tempfile.TemporaryDirectory() as folder, run_coturn(Path(folder)) as coturn:
        emulator = subprocess.Popen(
            [sys.executable, "-c", EMULATOR, coturn.stun_urls()[0], coturn.turn_urls()[0], coturn.secret,
             str(free_port())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        EMULATOR_PID.append(emulator.pid)
        try:
            assert emulator.stdout is not None
            url = emulator.stdout.readline().strip()
            result = asyncio.run(main(arguments, url, "sk_orga_ai_local_emulator_dev_key"))
        finally:
            assert emulator.stdin is not None
            emulator.stdin.close()
            emulator.wait(timeout=30)
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(result, indent=2))
