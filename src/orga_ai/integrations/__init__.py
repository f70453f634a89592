"""Thin adapters that mount the proxy route (:mod:`orga_ai.proxy`) in an existing web app.

Each translates its framework's request into a :class:`orga_ai.proxy.ProxyRequest` and the core's
:class:`orga_ai.proxy.ProxyResponse` back; the policy itself lives once, in :class:`orga_ai.proxy.ProxyCore`.

* :mod:`orga_ai.integrations.fastapi`: an ``APIRouter`` and a ``principal`` dependency (``orga-ai[fastapi]``).
* :mod:`orga_ai.integrations.flask`: a ``Blueprint`` on the sync client (``orga-ai[flask]``).
* :mod:`orga_ai.integrations.django`: a view and a URL include (``orga-ai[django]``).

As a serverless function (docs/serverless.md), on the sync client and without the async stack:

* :mod:`orga_ai.integrations.aws_lambda`: a Lambda handler for API Gateway, Function URLs and ALB
  (``orga-ai[aws-lambda]``).
* :mod:`orga_ai.integrations.gcp`: an HTTP function for Cloud Functions / functions-framework (``orga-ai[gcp]``).
* :mod:`orga_ai.integrations.functions`: WSGI and ASGI apps for Vercel and other function hosts
  (``orga-ai[functions]``).
"""
