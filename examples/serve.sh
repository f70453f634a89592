#!/bin/sh
# The standalone proxy: every flag also reads an ORGA_PROXY_* variable (docs/proxy.md has the table).
set -eu
: "${ORGA_API_KEY:?set ORGA_API_KEY to your sk_orga_ai_... key}"
: "${ORGA_PROXY_JWT_SECRET:?set ORGA_PROXY_JWT_SECRET to the key your app signs its JWTs with}"
exec orga-ai serve --host 127.0.0.1 --port 8080 \
  --jwt-audience my-app --jwt-issuer https://my-app.example/ \
  --rate-limit 10/minute --cors-origin http://localhost:3000
