"""The HTTP transports of the SDK, one module each behind the interface in ``base.py``.

``stdlib``: the sync default (http.client and a keep-alive pool). ``httpx``: a caller's ``httpx.Client``.
``aiohttp``: the async client on aiohttp (its own session, or a caller's). ``mock``: answers from a table, for tests
without sockets. Nothing is imported here: each module loads its library only when a client first needs it.
"""
