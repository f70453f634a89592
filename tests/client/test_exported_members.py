from __future__ import annotations

import orga_ai

EXPECTED = {
    "DEFAULT_BASE_URL", "DEFAULT_MAX_RETRIES", "DEFAULT_TIMEOUT", "AsyncOrgaAI", "EphemeralToken", "IcePolicy",
    "IceServer", "OrgaAI", "OrgaAIAuthenticationError", "OrgaAIBadRequestError", "OrgaAIConfigurationError",
    "OrgaAIConnectionError", "OrgaAIError", "OrgaAIInvalidResponseError", "OrgaAIPermissionError",
    "OrgaAIRateLimitError", "OrgaAIRealtimeChannelClosedError", "OrgaAIRealtimeConnectionError", "OrgaAIRealtimeError",
    "OrgaAIRealtimeICEError", "OrgaAIRealtimeInvalidAnswerError", "OrgaAIRealtimeRefusedError",
    "OrgaAIRealtimeTimeoutError", "OrgaAIServerError", "OrgaAITimeoutError", "PoolStats", "RetryBudget", "Secret",
    "SessionConfig", "__version__", "fingerprint",
}


def test_public_names_are_pinned() -> None:
    assert set(orga_ai.__all__) == EXPECTED
    assert len(orga_ai.__all__) == len(EXPECTED)
    for name in orga_ai.__all__:
        member = getattr(orga_ai, name)
        if isinstance(member, type):
            assert member.__module__.startswith("orga_ai."), name


def test_error_tree_keeps_the_node_sdk_classes_catchable() -> None:
    assert issubclass(orga_ai.OrgaAITimeoutError, orga_ai.OrgaAIServerError)
    assert issubclass(orga_ai.OrgaAIConnectionError, orga_ai.OrgaAIServerError)
    assert issubclass(orga_ai.OrgaAIInvalidResponseError, orga_ai.OrgaAIServerError)
    for name in orga_ai.__all__:
        member = getattr(orga_ai, name)
        if isinstance(member, type) and name.endswith("Error"):
            assert issubclass(member, orga_ai.OrgaAIError), name


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert (files("orga_ai") / "py.typed").is_file()
