"""Cloud Functions / Cloud Run functions: the client-secrets route as an HTTP function (docs/serverless.md).

Deploy with ``--entry-point client_secrets``; configure it with ``ORGA_PROXY_*`` variables and the key, mounted from
Secret Manager as ``ORGA_API_KEY``. Locally::

    functions-framework --source examples/gcp/main.py --target client_secrets --port 8080
"""

from orga_ai.integrations.gcp import client_secrets

__all__ = ["client_secrets"]
