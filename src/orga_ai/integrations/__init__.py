"""Thin adapters that mount the proxy route (:mod:`orga_ai.proxy`) in an existing web app.

Each translates its framework's request into a :class:`orga_ai.proxy.ProxyRequest` and the core's
:class:`orga_ai.proxy.ProxyResponse` back; the policy itself lives once, in :class:`orga_ai.proxy.ProxyCore`.

* :mod:`orga_ai.integrations.fastapi`: an ``APIRouter`` and a ``principal`` dependency (``orga-ai[fastapi]``).
* :mod:`orga_ai.integrations.flask`: a ``Blueprint`` on the sync client (``orga-ai[flask]``).
* :mod:`orga_ai.integrations.django`: a view and a URL include (``orga-ai[django]``).
"""
