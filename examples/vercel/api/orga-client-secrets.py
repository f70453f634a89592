"""Vercel: the client-secrets route as a Python function at /api/orga-client-secrets (docs/serverless.md).

Vercel loads the top-level ``app`` of this file (ASGI). The policy comes from the ``ORGA_PROXY_*`` environment
variables and the key from ``ORGA_API_KEY``, both set as encrypted environment variables of the project. Vercel's
edge writes the caller's address into ``X-Forwarded-For``, so ``platform_forwarded=True`` reads it from there.
"""

from orga_ai.integrations.functions import asgi_app

app = asgi_app(platform_forwarded=True)
