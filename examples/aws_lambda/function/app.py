"""AWS Lambda, with the policy in code instead of ORGA_PROXY_* variables (docs/serverless.md).

Point the function's handler at ``app.handler``. The key still comes from ``ORGA_API_KEY_SECRET_ARN`` (read once per
instance); the Redis URL from ``ORGA_PROXY_REDIS_URL``.
"""

import os

from orga_ai.integrations.aws_lambda import make_handler
from orga_ai.proxy import JWTAuth

handler = make_handler(
    authenticate=JWTAuth(
        jwks_url=os.environ["ORGA_PROXY_JWKS_URL"],
        audience=os.environ["ORGA_PROXY_JWT_AUDIENCE"],
        issuer=os.environ["ORGA_PROXY_JWT_ISSUER"],
    ),
    rate_limit="10/minute",
    storage_uri=os.environ["ORGA_PROXY_REDIS_URL"],
    cors_origins=[os.environ["ORGA_PROXY_CORS_ORIGIN"]],
)
