// A minimal, fast stand-in for Orga Cloud's two credential endpoints, for `make bench` only.
//
//   node benchmarks/upstream.js --port 18001 --latency-ms 20
//
// POST /v1/realtime/client-secrets (Bearer API key, `?email=` tolerated for @orga-ai/node 1.0.0-beta.1)
//   -> {"ephemeral_token": "<JWT-like>", "token_type": "bearer", "expires_at": "<naive ISO, UTC>"}
// GET  /v1/realtime/ice-config (Bearer token) -> {"iceServers": [STUN, TURN with username/credential]}
//
// Every answer is delayed by --latency-ms (a timer, no CPU), so the proxies see a fixed upstream latency. The
// server is plain node:http, one process, keep-alive: run.py measures its own throughput with wrk to show it is
// far from being the bottleneck. Each token is unique (a counter in the signature part): tokens are single use.
"use strict";

const http = require("node:http");

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(arg("port", "18001"));
const latency = Number(arg("latency-ms", "0"));
const ttlSeconds = 900;

const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
const header = b64({ alg: "HS256", typ: "JWT" });
let counter = 0;
let cachedSecond = -1;
let cachedPrefix = "";
let cachedExpiry = "";

function tokenBody() {
  const now = Math.floor(Date.now() / 1000);
  if (now !== cachedSecond) {
    cachedSecond = now;
    const exp = now + ttlSeconds;
    cachedPrefix = `${header}.${b64({ sub: "bench", api_key_id: "key_bench", scope: "realtime", iat: now, exp })}.`;
    cachedExpiry = new Date(exp * 1000).toISOString().replace("Z", "");
  }
  counter += 1;
  const token = cachedPrefix + "sig" + counter.toString(36).padStart(8, "0");
  return `{"ephemeral_token":"${token}","token_type":"bearer","expires_at":"${cachedExpiry}"}`;
}

const iceBody = JSON.stringify({
  iceServers: [
    { urls: ["stun:stun1.l.google.com:19302"] },
    {
      urls: ["turn:turn.orga-ai.com:3478?transport=udp", "turn:turn.orga-ai.com:3478?transport=tcp"],
      username: "1764000000:bench",
      credential: "c2VjcmV0LWNyZWRlbnRpYWwtZm9yLWJlbmNo",
    },
  ],
});

function send(res, status, body) {
  const write = () => {
    res.writeHead(status, {
      "Content-Type": "application/json",
      "Content-Length": Buffer.byteLength(body),
      "X-Request-ID": `req_${counter.toString(36)}`,
    });
    res.end(body);
  };
  if (latency > 0) setTimeout(write, latency);
  else write();
}

const unauthorized = '{"error":{"message":"Not authenticated","type":"invalid_request_error","param":null,"code":null}}';

const server = http.createServer((req, res) => {
  const auth = req.headers.authorization || "";
  const q = req.url.indexOf("?");
  const path = q < 0 ? req.url : req.url.slice(0, q);
  // Drain any request body (the SDKs send none, or an empty one).
  req.resume();
  if (!auth.startsWith("Bearer ") || auth.length < 12) return send(res, 403, unauthorized);
  if (path === "/v1/realtime/client-secrets" && req.method === "POST") return send(res, 200, tokenBody());
  if (path === "/v1/realtime/ice-config" && req.method === "GET") return send(res, 200, iceBody);
  return send(res, 404, '{"detail":"Not Found"}');
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`upstream listening on 127.0.0.1:${port} latency=${latency}ms\n`);
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
