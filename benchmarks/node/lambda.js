// A minimal AWS Lambda handler on @orga-ai/node: the Node side of `make bench`'s serverless section.
//
// What a Node backend would deploy as the route: a lazily created client reused across warm invocations, OPTIONS
// answered, the session config (or a 502) as an API Gateway proxy response. No policy layer (auth, rate limits):
// the orga-ai handler it is compared with carries one, so the comparison is conservative for orga-ai.
"use strict";

const { OrgaAI } = require("@orga-ai/node");

let orga = null;
const headers = { "content-type": "application/json", "cache-control": "no-store" };

exports.handler = async (event) => {
  const method = (event.requestContext && event.requestContext.http && event.requestContext.http.method) ||
    event.httpMethod;
  if (method === "OPTIONS") return { statusCode: 204, headers };
  if (orga === null) {
    orga = new OrgaAI({
      apiKey: process.env.ORGA_API_KEY,
      userEmail: "bench@example.com",
      baseUrl: process.env.ORGA_BASE_URL,
    });
  }
  try {
    const config = await orga.getSessionConfig();
    return { statusCode: 200, headers, body: JSON.stringify(config) };
  } catch (error) {
    return { statusCode: 502, headers, body: JSON.stringify({ error: "upstream_error" }) };
  }
};
