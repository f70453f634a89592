"""Vercel, WSGI variant: the same route as examples/vercel/api/orga-client-secrets.py, as a WSGI ``app``.

Nothing asynchronous is imported at all on this path; choose it when the project has no other ASGI code.
"""

from orga_ai.integrations.functions import wsgi_app

app = wsgi_app(platform_forwarded=True)
