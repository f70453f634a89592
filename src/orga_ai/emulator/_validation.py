"""Validation of the ``POST /v1/realtime/calls`` body, answering like FastAPI/pydantic would (422 ``detail`` array)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallRequest", "validate_call_body"]

_MAX_SDP = 256 * 1024
_MODALITIES = ("audio", "video")


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A valid calls body: the client's offer and its session parameters (voice and model are opaque strings)."""

    sdp: str
    candidates: tuple[dict[str, Any], ...]
    params: dict[str, Any] = field(default_factory=dict)


def _error(kind: str, loc: tuple[str | int, ...], msg: str, value: Any, **ctx: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "loc": ["body", *loc], "msg": msg, "input": value}
    if ctx:
        out["ctx"] = ctx
    return out


def _check_optional(
    errors: list[dict[str, Any]], params: dict[str, Any], name: str, kinds: tuple[type, ...], kind: str, msg: str
) -> None:
    value = params.get(name)
    if value is None:
        return
    # bool is an int subclass in Python but not a number on the wire.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        errors.append(_error(kind, ("params", name), msg, value))


def _candidate(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        return {"candidate": value}
    if isinstance(value, dict) and isinstance(value.get("candidate"), str):
        return value
    return None


def validate_call_body(raw: bytes) -> CallRequest | list[dict[str, Any]]:
    """The parsed body, or the list of pydantic-style errors to answer 422 with."""
    try:
        data = json.loads(raw) if raw.strip() else None
    except (ValueError, RecursionError) as exc:
        return [_error("json_invalid", (0,), "JSON decode error", {}, error=str(exc).split(":")[0])]
    if data is None:
        return [_error("missing", (), "Field required", None)]
    if not isinstance(data, dict):
        return [_error("model_attributes_type", (), "Input should be a valid dictionary or object", data)]

    errors: list[dict[str, Any]] = []
    offer = data.get("offer")
    sdp = ""
    candidates: list[dict[str, Any]] = []
    if offer is None:
        errors.append(_error("missing", ("offer",), "Field required", data))
    elif not isinstance(offer, dict):
        errors.append(_error("model_attributes_type", ("offer",), "Input should be a valid dictionary", offer))
    else:
        if "sdp" not in offer:
            errors.append(_error("missing", ("offer", "sdp"), "Field required", offer))
        elif not isinstance(offer["sdp"], str):
            errors.append(_error("string_type", ("offer", "sdp"), "Input should be a valid string", offer["sdp"]))
        elif not offer["sdp"].startswith("v=0") or len(offer["sdp"]) > _MAX_SDP:
            errors.append(
                _error("value_error", ("offer", "sdp"), "Value error, not an SDP offer", offer["sdp"][:64])
            )
        else:
            sdp = offer["sdp"]
        if "type" not in offer:
            errors.append(_error("missing", ("offer", "type"), "Field required", offer))
        elif offer["type"] != "offer":
            errors.append(
                _error("literal_error", ("offer", "type"), "Input should be 'offer'", offer["type"], expected="'offer'")
            )
        raw_candidates = offer.get("candidates", [])
        if raw_candidates is None:
            raw_candidates = []
        if not isinstance(raw_candidates, list):
            errors.append(_error("list_type", ("offer", "candidates"), "Input should be a valid list", raw_candidates))
        else:
            for index, item in enumerate(raw_candidates):
                parsed = _candidate(item)
                if parsed is None:
                    errors.append(
                        _error(
                            "model_attributes_type",
                            ("offer", "candidates", index),
                            "Input should be an ICE candidate object with a 'candidate' string",
                            item,
                        )
                    )
                else:
                    candidates.append(parsed)

    params = data.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        errors.append(_error("model_attributes_type", ("params",), "Input should be a valid dictionary", params))
        params = {}
    for name in ("voice", "model", "instructions"):
        _check_optional(errors, params, name, (str,), "string_type", "Input should be a valid string")
    for name in ("return_transcription", "history"):
        _check_optional(errors, params, name, (bool,), "bool_type", "Input should be a valid boolean")
    temperature = params.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature):
            errors.append(_error("float_type", ("params", "temperature"), "Input should be a number", temperature))
        elif not 0 <= temperature <= 2:
            errors.append(
                _error(
                    "less_than_equal" if temperature > 2 else "greater_than_equal",
                    ("params", "temperature"),
                    "Input should be between 0 and 2",
                    temperature,
                )
            )
    modalities = params.get("modalities")
    if modalities is not None:
        if not isinstance(modalities, list):
            errors.append(_error("list_type", ("params", "modalities"), "Input should be a valid list", modalities))
        else:
            for index, item in enumerate(modalities):
                if item not in _MODALITIES:
                    errors.append(
                        _error(
                            "literal_error",
                            ("params", "modalities", index),
                            "Input should be 'audio' or 'video'",
                            item,
                            expected="'audio' or 'video'",
                        )
                    )
    if errors:
        return errors
    return CallRequest(sdp, tuple(candidates), dict(params))
