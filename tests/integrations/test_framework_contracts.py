"""The non-public names of web frameworks the adapters use, one test each, checked against the installed releases: a
release that moves one fails here, naming it, before an integration test fails in a less direct way.

* flask-cors: the closure variable ``resources`` of its after-request function (``integrations/_cors.py``). Users
  bring their own flask-cors; a release without it makes start-up fail naming the route's own ``cors_origins``
  (``test_native_identity.py``). The ``test`` extra pins flask-cors below 7, so a new major is read here first.
* Werkzeug: ``LocalProxy._get_current_object()`` (``integrations/flask.py``: the native request handed to hooks).
* Starlette: ``starlette.requests.cookie_parser`` (``proxy/_app.py``: cookies parsed only when an authenticator
  reads them), a module function outside ``__all__``.
"""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version

import flask
import flask_cors
import starlette.requests
from werkzeug.local import LocalProxy

from orga_ai.integrations._cors import _flask_cors_resources, _origins_of, _path_matches


def test_flask_cors_keeps_its_resources_in_the_after_request_closure() -> None:
    app = flask.Flask(__name__)
    flask_cors.CORS(
        app,
        resources={r"/api/*": {"origins": ["https://app.example.com", r"https://.*\.example\.org"]}},
        supports_credentials=True,
    )
    hooks = [f for f in app.after_request_funcs[None] if f.__module__.startswith("flask_cors")]
    assert len(hooks) == 1
    assert "resources" in inspect.getclosurevars(hooks[0]).nonlocals, f"flask-cors {version('flask-cors')}"
    resources = _flask_cors_resources(hooks[0])
    assert resources is not None
    [(pattern, options)] = resources
    assert _path_matches(pattern, "/api/orga-client-secrets") and not _path_matches(pattern, "/other")
    origins = [str(getattr(origin, "pattern", origin)) for origin in _origins_of(options, "cors_origins")]
    assert origins == ["https://app.example.com", r"https://.*\.example\.org"]
    # Attributes in flask-cors 6.0.5, a dict in 6.0.0: _cors.py reads both.
    credentials = options.get("supports_credentials") if isinstance(options, dict) else options.supports_credentials
    assert credentials is True
    assert int(version("flask-cors").split(".")[0]) == 6  # the test extra's range (>=6,<7)


def test_werkzeug_local_proxy_gives_the_object_behind_it() -> None:
    app = flask.Flask(__name__)
    assert isinstance(flask.request, LocalProxy)
    with app.test_request_context("/api/orga-client-secrets"):
        native = flask.request._get_current_object()  # type: ignore[attr-defined]
        assert type(native) is flask.Request
        assert native.path == "/api/orga-client-secrets"


def test_starlette_cookie_parser_reads_a_cookie_header() -> None:
    parser = starlette.requests.cookie_parser
    assert parser("session=abc; theme=dark") == {"session": "abc", "theme": "dark"}
    assert parser('quoted="a b"') == {"quoted": "a b"}


def test_flask_cors_tells_a_regex_origin_by_its_characters() -> None:
    """integrations/_cors.py sorts flask-cors origins with flask-cors's own rule, ``probably_regex``."""
    from flask_cors.core import probably_regex

    assert probably_regex(r"https?://.*\.example") and probably_regex(re.compile("x"))
    assert not probably_regex("https://app.example")
