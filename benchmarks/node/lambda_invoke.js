// One Lambda-style cold start of @orga-ai/node (the counterpart of benchmarks/lambda_invoke.py).
//
//   node lambda_invoke.js EVENT.json --warm 200 [--bare]
//
// First stdout line as soon as the first invocation has its response; then --warm invocations timed in-process;
// the last line reports their median and the process's own peak RSS (VmHWM, KiB). --bare calls getSessionConfig()
// on a bare client instead of the handler.
"use strict";

const fs = require("node:fs");

const argv = process.argv;
const warmAt = argv.indexOf("--warm");
const warm = warmAt > 0 ? Number(argv[warmAt + 1]) : 0;
let invoke;
if (argv.includes("--bare")) {
  const { OrgaAI } = require("@orga-ai/node");
  const orga = new OrgaAI({
    apiKey: process.env.ORGA_API_KEY,
    userEmail: "bench@example.com",
    baseUrl: process.env.ORGA_BASE_URL,
  });
  invoke = async () => {
    await orga.getSessionConfig();
    return 200;
  };
} else {
  const { handler } = require("./lambda.js");
  const event = JSON.parse(fs.readFileSync(argv[2], "utf8"));
  invoke = async () => (await handler(event, {})).statusCode;
}

async function main() {
  const status = await invoke();
  process.stdout.write(`{"status": ${status}}\n`);
  const samples = [];
  for (let i = 0; i < warm; i++) {
    const t0 = process.hrtime.bigint();
    await invoke();
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  samples.sort((a, b) => a - b);
  const median = samples.length ? samples[Math.floor(samples.length / 2)] : null;
  // VmHWM, this process's own peak (maxRSS would also count the parent's RSS at fork).
  const hwm = /VmHWM:\s+(\d+)/.exec(fs.readFileSync("/proc/self/status", "utf8"));
  process.stdout.write(JSON.stringify({ warm_median_us: median, peak_rss_kib: Number(hwm[1]) }) + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
