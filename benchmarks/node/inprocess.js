// In-process timing of @orga-ai/node's getSessionConfig(), and of two raw fetch() calls (Node's own floor).
//
//   ORGA_API_KEY=... ORGA_BASE_URL=http://127.0.0.1:18001 node inprocess.js --calls 2000 --warmup 200
//
// Sequential calls on one client; each call is timed alone. Prints one JSON line:
//   {"sdk": {"median_us", "mean_us", "p99_us", "n"}, "raw": {...}}
"use strict";

const { OrgaAI } = require("@orga-ai/node");

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const calls = Number(arg("calls", "2000"));
const warmup = Number(arg("warmup", "200"));
const baseUrl = process.env.ORGA_BASE_URL;
const apiKey = process.env.ORGA_API_KEY;

function summary(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const pick = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return { median_us: pick(0.5), mean_us: mean, p99_us: pick(0.99), n: sorted.length };
}

async function time(fn) {
  for (let i = 0; i < warmup; i++) await fn();
  const samples = new Array(calls);
  for (let i = 0; i < calls; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    samples[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  return summary(samples);
}

async function raw() {
  const token = await fetch(`${baseUrl}/v1/realtime/client-secrets`, {
    method: "POST",
    headers: { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json" },
  });
  const { ephemeral_token: value } = await token.json();
  const ice = await fetch(`${baseUrl}/v1/realtime/ice-config`, { headers: { Authorization: `Bearer ${value}` } });
  return (await ice.json()).iceServers;
}

async function main() {
  const orga = new OrgaAI({ apiKey, userEmail: "bench@example.com", baseUrl });
  const only = arg("only", "");
  const out = {};
  if (only !== "raw") out.sdk = await time(() => orga.getSessionConfig());
  if (only !== "sdk") out.raw = await time(raw);
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
