"""Fixtures of the realtime tests: one coturn and one emulator handing out its STUN/TURN URLs (so gathering answers
at once and relay-only calls have a real relay), reset before each test; WAV and tone helpers."""

from __future__ import annotations

import math
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from orga_ai.emulator import EmulatorConfig
from orga_ai.testing import RunningEmulator, run_emulator
from tests.support import Coturn, run_coturn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    with run_coturn(tmp_path_factory.mktemp("rt-coturn")) as running:
        yield running


def emulator_config(coturn: Coturn, **overrides: object) -> EmulatorConfig:
    """An emulator config whose ICE servers are this coturn (UDP)."""
    return EmulatorConfig(
        stun_urls=coturn.stun_urls(), turn_urls=(coturn.turn_urls()[0],), turn_secret=coturn.secret,
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def rt_emulator_server(coturn: Coturn) -> Iterator[RunningEmulator]:
    with run_emulator(emulator_config(coturn)) as running:
        yield running


@pytest.fixture
def rt_emulator(rt_emulator_server: RunningEmulator) -> RunningEmulator:
    """The realtime emulator, reset (no faults, no calls) before the test."""
    rt_emulator_server.reset()
    return rt_emulator_server


def tone(freq: float, seconds: float, rate: int = 16000, amplitude: float = 0.4) -> bytes:
    """A sine as PCM16 mono."""
    n = int(seconds * rate)
    samples = (amplitude * 32767 * np.sin(2 * math.pi * freq * np.arange(n) / rate)).astype("<i2")
    return samples.tobytes()


def write_wav(path: Path, pcm: bytes, rate: int = 16000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return path


def loud_part(pcm: bytes, threshold: float = 1500.0) -> np.ndarray:
    """The samples of the 20 ms windows whose RMS passes ``threshold`` (the tone, without the silence around it)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    window = 960
    keep = [samples[i : i + window] for i in range(0, len(samples) - window + 1, window)
            if np.sqrt(np.mean(samples[i : i + window] ** 2)) > threshold]
    return np.concatenate(keep) if keep else np.zeros(0)


def dominant_frequency(samples: np.ndarray, rate: int = 48000) -> float:
    """The frequency of the highest peak of the spectrum (Hann window)."""
    assert len(samples) >= rate // 10, f"only {len(samples)} loud samples came back"
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])
