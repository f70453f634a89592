// The Node contender: the reference SDK @orga-ai/node behind Express, written the way its README suggests.
//
//   ORGA_API_KEY=... ORGA_BASE_URL=http://127.0.0.1:18001 PORT=18100 node benchmarks/node/server.js
//
// One module-level OrgaAI client (the singleton the SDK's docs recommend), one route. @orga-ai/node takes its base
// URL as the documented `baseUrl` constructor option, so pointing it at the stand-in upstream needs no patching.
// 1.0.0-beta.1 also requires `userEmail` (it sends `?email=` to the older API generation); the upstream ignores it.
"use strict";

const express = require("express");
const { OrgaAI } = require("@orga-ai/node");

const orga = new OrgaAI({
  apiKey: process.env.ORGA_API_KEY,
  userEmail: process.env.ORGA_USER_EMAIL || "bench@example.com",
  baseUrl: process.env.ORGA_BASE_URL,
});

const app = express();
app.disable("x-powered-by");

app.get("/api/orga-client-secrets", async (_req, res) => {
  try {
    const { ephemeralToken, iceServers } = await orga.getSessionConfig();
    res.json({ ephemeralToken, iceServers });
  } catch (error) {
    res.status(error.status && error.status >= 400 ? error.status : 500).json({ error: "Failed to get session config" });
  }
});

const port = Number(process.env.PORT || 18100);
app.listen(port, "127.0.0.1", () => {
  process.stdout.write(`node contender listening on 127.0.0.1:${port}\n`);
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
