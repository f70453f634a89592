// The client side of one Orga session, done the way Orga's client SDKs do it, with every step shown on the page.
// Plain ES2020, no build step, nothing loaded from elsewhere (the page must work offline).
//
// Query parameters: ?relay=1 forces iceTransportPolicy "relay" (TURN only); ?autostart=1 starts on load.
"use strict";

const EVENTS_CHANNEL = "orga-realtime-client-events";
const CALLS_PATH = "/v1/realtime/calls";
const GATHER_TIMEOUT_MS = 5000; // Orga's client SDK waits this long for ICE gathering, then sends what it has.
const CALL_TIMEOUT_MS = 10000; // ... and gives /v1/realtime/calls this long (connectToRealtime's AbortController).
const CONNECT_TIMEOUT_MS = 15000; // A call that cannot find a path may stay "new" forever: give up on our own.
const SESSION_PARAMS = {
  voice: "Sofía",
  model: "orga-1-beta",
  temperature: 0.5,
  return_transcription: false,
  instructions: null,
  modalities: ["audio"],
  history: true,
};

const query = new URLSearchParams(window.location.search);
const relayOnly = query.get("relay") === "1";

const $ = (id) => document.getElementById(id);

const state = {
  dev: null, // /dev/config.json: {orgaBaseUrl, emulator, sessionEndpoint}
  config: null, // the session config from the proxy route
  expiresAtMs: null,
  pc: null,
  localStream: null,
  timers: [],
};

// An error the page can explain: which step failed, and what to do about it, in words.
class StepError extends Error {
  constructor(step, message) {
    super(message);
    this.name = "StepError";
    this.step = step;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Display helpers

function setText(id, text, className) {
  const el = $(id);
  el.textContent = text;
  if (className !== undefined) el.className = className;
}

function stepClass(step, status) {
  const el = $(step);
  el.classList.remove("active", "done", "failed");
  if (status) el.classList.add(status);
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  const box = $("error");
  box.textContent = "";
  box.hidden = true;
}

function maskSecret(value) {
  if (typeof value !== "string") return value;
  if (value.length <= 12) return "•".repeat(value.length);
  return `${value.slice(0, 6)}…${value.slice(-4)} (${value.length} chars, masked)`;
}

// The config as the route sent it, minus the secrets: the token and TURN credentials never appear in clear.
function maskedConfig(config) {
  const copy = JSON.parse(JSON.stringify(config));
  copy.ephemeralToken = maskSecret(copy.ephemeralToken);
  if (Array.isArray(copy.iceServers)) {
    for (const server of copy.iceServers) {
      if (!server) continue;
      // A TURN username and its credential are the pair a relay accepts: neither is shown in clear.
      if (typeof server.username === "string") server.username = maskSecret(server.username);
      if (typeof server.credential === "string") server.credential = maskSecret(server.credential);
    }
  }
  return copy;
}

// expiresAt from the route, else the JWT's exp claim (read only, never trusted for anything but the countdown).
function expiryOf(config) {
  if (typeof config.expiresAt === "string") {
    const ms = Date.parse(config.expiresAt);
    if (!Number.isNaN(ms)) return ms;
  }
  try {
    const payload = config.ephemeralToken.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(payload));
    if (typeof claims.exp === "number") return claims.exp * 1000;
  } catch (_) {
    // Not a JWT: the expiry stays unknown.
  }
  return null;
}

function tickExpiry() {
  if (state.expiresAtMs === null) {
    setText("expiry", "at an unknown time");
    return;
  }
  const left = Math.round((state.expiresAtMs - Date.now()) / 1000);
  if (left > 0) setText("expiry", `in ${left} s`, "");
  else setText("expiry", `${-left} s ago (expired)`, "expired");
}

function addTimer(id) {
  state.timers.push(id);
  return id;
}

function clearTimers() {
  for (const id of state.timers) clearInterval(id);
  state.timers = [];
}

function errorMessageOf(body) {
  if (!body || typeof body !== "object") return "";
  const error = body.error;
  if (error && typeof error === "object" && typeof error.message === "string") return error.message;
  if (typeof error === "string") return error;
  if (Array.isArray(body.detail)) return body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  if (typeof body.detail === "string") return body.detail;
  if (typeof body.message === "string") return body.message;
  return "";
}

async function readJson(response) {
  try {
    return await response.json();
  } catch (_) {
    return null;
  }
}

function retryAfterText(response) {
  const value = response.headers.get("Retry-After");
  return value ? ` Try again in ${value} s.` : " Wait a little and try again.";
}

// ---------------------------------------------------------------------------------------------------------------------
// Step 1: the session config, fetched the way @orga-ai/core's fetchSessionConfig does (plain GET, no headers)

async function fetchSessionConfig() {
  const endpoint = state.dev.sessionEndpoint;
  stepClass("step-config", "active");
  setText("config-status", "fetching…");
  let response;
  try {
    response = await fetch(endpoint, { cache: "no-store" });
  } catch (err) {
    throw new StepError(1, `The proxy is unreachable: GET ${endpoint} failed (${err.message}). ` +
      "Is orga-ai dev still running?");
  }
  const body = await readJson(response);
  const detail = errorMessageOf(body);
  if (response.status === 429) {
    throw new StepError(1, `Rate limited: the proxy refused to mint another session (HTTP 429).${retryAfterText(response)}` +
      (detail ? `\nProxy said: ${detail}` : ""));
  }
  if (!response.ok) {
    let what = "The proxy refused the request";
    if (response.status === 401 || response.status === 403) what = "The proxy wants you signed in";
    else if (response.status >= 502 && response.status <= 504) what = "The proxy could not get a session from Orga";
    else if (response.status >= 500) what = "The proxy failed";
    throw new StepError(1, `${what} (HTTP ${response.status}).${detail ? ` ${detail}` : ""}`);
  }
  // The same check as @orga-ai/core: a truthy ephemeralToken and iceServers, or the same words it throws.
  if (!body || !body.ephemeralToken || !body.iceServers) {
    throw new StepError(1, "Invalid response from session config endpoint: ephemeralToken and iceServers are required.");
  }
  state.config = body;
  state.expiresAtMs = expiryOf(body);
  $("config-json").textContent = JSON.stringify(maskedConfig(body), null, 2);
  setText("config-status", "received", "state-connected");
  clearTimers();
  tickExpiry();
  addTimer(setInterval(tickExpiry, 250));
  stepClass("step-config", "done");
  return body;
}

// ---------------------------------------------------------------------------------------------------------------------
// Steps 2-4: peer connection, non-trickle offer to /v1/realtime/calls, answer, data channel

function candidateType(candidate) {
  if (candidate.type) return candidate.type;
  const match = / typ (\w+)/.exec(candidate.candidate || "");
  return match ? match[1] : "unknown";
}

function recordCandidate(candidate) {
  const type = candidateType(candidate);
  const counter = $(`count-${type}`);
  if (counter) counter.textContent = String(Number(counter.textContent) + 1);
  const li = document.createElement("li");
  li.dataset.type = type;
  const where = candidate.address ? `${candidate.address}:${candidate.port}` : "";
  li.textContent = `${type.padEnd(5)} ${candidate.protocol || ""} ${where}  ${candidate.candidate}`;
  $("candidates").appendChild(li);
}

function waitForGathering(pc) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") {
      resolve(true);
      return;
    }
    const timer = setTimeout(() => {
      pc.removeEventListener("icegatheringstatechange", check);
      resolve(false);
    }, GATHER_TIMEOUT_MS);
    function check() {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve(true);
      }
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

async function addMicrophone(pc) {
  try {
    state.localStream = await navigator.mediaDevices.getUserMedia({ audio: true });
    for (const track of state.localStream.getAudioTracks()) pc.addTrack(track, state.localStream);
    setText("audio-status", "microphone on, waiting for the echo");
  } catch (err) {
    // No microphone (or not allowed): still open the session, receiving only.
    pc.addTransceiver("audio", { direction: "recvonly" });
    setText("audio-status", `no microphone (${err.name}): receiving only`);
  }
}

// What the caller said and what the agent answered, as a conversation (the two events Orga's client SDKs turn into
// conversation items).
function showTranscript(type, message) {
  let who = null;
  if (type === "conversation.item.input_audio_transcription.completed") who = "you";
  else if (type === "response.output_item.done") who = "agent";
  if (!who) return;
  const parts = (message.item && Array.isArray(message.item.content)) ? message.item.content : [];
  const fromItem = parts.map((p) => p && (p.transcript || p.text)).filter(Boolean).join(" ");
  const text = message.transcript || message.text || message.message || fromItem || "";
  const li = document.createElement("li");
  li.dataset.role = who;
  li.textContent = `${who}: ${text}`;
  $("transcript").appendChild(li);
}

function showEvent(raw) {
  let message;
  try {
    message = JSON.parse(raw);
  } catch (_) {
    message = { type: "(not JSON)", raw: String(raw) };
  }
  const type = (message && (message.type || message.event)) || "(no type)";
  const li = document.createElement("li");
  li.dataset.type = type;
  const name = document.createElement("strong");
  name.textContent = type;
  const payload = document.createElement("code");
  payload.textContent = ` ${JSON.stringify(message)}`;
  li.append(name, payload);
  $("events").appendChild(li);
  showTranscript(type, message);
  if (type === "error") {
    showError(`Orga sent an error on the data channel: ${errorMessageOf(message) || JSON.stringify(message)}`);
  }
}

async function watchAudio(pc) {
  // Count the echoed RTP packets: "playing" on the page means audio really comes back, not just a track object.
  addTimer(setInterval(async () => {
    if (pc.connectionState === "closed") return;
    const stats = await pc.getStats();
    stats.forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "audio" && report.packetsReceived > 0) {
        setText("audio-status", `receiving the echo (${report.packetsReceived} packets)`);
      }
    });
  }, 1000));
}

async function postOffer(pc, gathered) {
  const url = state.dev.orgaBaseUrl + CALLS_PATH;
  const body = {
    offer: { sdp: pc.localDescription.sdp, type: pc.localDescription.type, candidates: gathered },
    params: SESSION_PARAMS,
  };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), CALL_TIMEOUT_MS);
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${state.config.ephemeralToken}` },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
  } catch (err) {
    if (err.name === "AbortError") {
      throw new StepError(3, `Orga did not answer ${url} within ${CALL_TIMEOUT_MS / 1000} s.`);
    }
    throw new StepError(3, `Orga is unreachable at ${url} (${err.message}). ` +
      (state.dev.emulator ? "Is the emulator still running, and does it answer CORS?" : "Check your network."));
  } finally {
    clearTimeout(timer);
  }
  const data = await readJson(response);
  const detail = errorMessageOf(data);
  if (response.status === 401) {
    throw new StepError(3, "The session token was refused (HTTP 401): it has expired or was already used. " +
      "Tokens are single-use and short-lived: press Start to fetch a fresh one." + (detail ? `\nOrga said: ${detail}` : ""));
  }
  if (response.status === 403) {
    throw new StepError(3, `Orga saw no token (HTTP 403).${detail ? ` ${detail}` : ""}`);
  }
  if (response.status === 429) {
    throw new StepError(3, `Rate limited by Orga (HTTP 429).${retryAfterText(response)}`);
  }
  if (response.status === 422) {
    throw new StepError(3, `Orga rejected the call request (HTTP 422): ${detail}`);
  }
  if (!response.ok) {
    throw new StepError(3, `Orga refused the call (HTTP ${response.status}).${detail ? ` ${detail}` : ""}`);
  }
  if (!data || !data.answer || !data.conversation_id) {
    throw new StepError(3, "Invalid response from /v1/realtime/calls: missing answer or conversation_id.");
  }
  return data;
}

async function connect() {
  if (!state.config) throw new StepError(2, "No session config yet: fetch one first.");
  const config = state.config;
  stepClass("step-ice", "active");
  const pc = new RTCPeerConnection({ iceServers: config.iceServers, iceTransportPolicy: relayOnly ? "relay" : "all" });
  state.pc = pc;
  const gathered = [];
  pc.addEventListener("icecandidate", (event) => {
    if (event.candidate) {
      gathered.push(event.candidate.toJSON());
      recordCandidate(event.candidate);
    }
  });
  pc.addEventListener("icecandidateerror", (event) => {
    // A refused TURN credential shows up here (errorCode 401), not as a failed connection.
    const li = document.createElement("li");
    li.textContent = `${event.url || "ICE server"}: ${event.errorCode} ${event.errorText}`;
    $("ice-warnings").appendChild(li);
  });
  pc.addEventListener("icegatheringstatechange", () => setText("gathering-state", pc.iceGatheringState));
  pc.addEventListener("iceconnectionstatechange", () => setText("ice-state", pc.iceConnectionState));
  pc.addEventListener("connectionstatechange", () => {
    setText("connection-state", pc.connectionState, `state-${pc.connectionState}`);
    if (pc.connectionState === "connected") stepClass("step-session", "done");
    if (pc.connectionState === "failed") {
      stepClass("step-session", "failed");
      showError("Step 4 (session): the connection failed: no ICE candidate pair worked." +
        (relayOnly ? " In relay mode only TURN may carry the call: check the TURN server and its credentials." : ""));
    }
  });
  pc.addEventListener("track", (event) => {
    const audio = $("remote-audio");
    audio.srcObject = event.streams[0] || new MediaStream([event.track]);
    audio.play().catch((err) => setText("audio-status", `echo received, playback blocked (${err.name}): press play`));
  });
  setText("connection-state", pc.connectionState);

  const channel = pc.createDataChannel(EVENTS_CHANNEL);
  channel.addEventListener("open", () => {
    setText("channel-state", "open");
    channel.send(JSON.stringify({ event: "session.update", data: SESSION_PARAMS }));
  });
  channel.addEventListener("close", () => setText("channel-state", "closed"));
  channel.addEventListener("message", (event) => showEvent(event.data));
  setText("channel-state", channel.readyState);

  await addMicrophone(pc);
  await pc.setLocalDescription(await pc.createOffer());
  setText("gathering-state", pc.iceGatheringState);
  const complete = await waitForGathering(pc);
  setText("gathering-state", complete ? "complete" : `timed out after ${GATHER_TIMEOUT_MS / 1000} s (sending what we have)`);
  if (relayOnly && !gathered.some((c) => candidateType(c) === "relay" || / typ relay/.test(c.candidate))) {
    stepClass("step-ice", "failed");
    throw new StepError(2, "Relay-only mode, but no relay candidate was gathered: the TURN server is unreachable or " +
      "refused the credentials (see the warnings above).");
  }
  stepClass("step-ice", "done");

  stepClass("step-call", "active");
  setText("call-status", "sending the offer…");
  const data = await postOffer(pc, gathered);
  setText("conversation-id", data.conversation_id);
  await pc.setRemoteDescription(data.answer);
  setText("call-status", "answer applied", "state-connected");
  stepClass("step-call", "done");
  stepClass("step-session", "active");
  watchAudio(pc);

  const deadline = Date.now() + CONNECT_TIMEOUT_MS;
  addTimer(setInterval(() => {
    if (pc.connectionState !== "connected" && pc.connectionState !== "closed" && Date.now() > deadline) {
      clearTimers();
      stepClass("step-session", "failed");
      showError(`Step 4 (session): not connected after ${CONNECT_TIMEOUT_MS / 1000} s ` +
        `(connection state "${pc.connectionState}"). No network path between this browser and Orga worked.`);
    }
  }, 500));
}

// Release the peer and the microphone after a failed step; what the page shows about it stays.
function releasePeer() {
  if (state.pc) state.pc.close();
  if (state.localStream) state.localStream.getTracks().forEach((track) => track.stop());
  state.pc = null;
  state.localStream = null;
  $("hangup").disabled = true;
}

function hangUp() {
  clearTimers();
  if (state.pc) {
    state.pc.close();
    setText("connection-state", "closed", "state-closed");
    setText("channel-state", "closed");
  }
  if (state.localStream) state.localStream.getTracks().forEach((track) => track.stop());
  state.pc = null;
  state.localStream = null;
  $("hangup").disabled = true;
}

function resetView() {
  hangUp();
  clearError();
  for (const id of ["candidates", "ice-warnings", "events", "transcript"]) $(id).replaceChildren();
  for (const type of ["host", "srflx", "relay", "prflx"]) setText(`count-${type}`, "0");
  for (const id of ["gathering-state", "ice-state", "connection-state", "channel-state", "audio-status", "call-status"]) {
    setText(id, "—", "");
  }
  setText("conversation-id", "—");
  for (const step of ["step-config", "step-ice", "step-call", "step-session"]) stepClass(step, null);
}

async function runSteps(steps) {
  const buttons = ["start", "fetch-only", "connect-only"].map($);
  buttons.forEach((b) => { b.disabled = true; });
  try {
    await steps();
  } catch (err) {
    const step = err instanceof StepError ? err.step : null;
    const names = { 1: "session config", 2: "ICE gathering", 3: "offer / answer", 4: "session" };
    if (step) stepClass(["step-config", "step-ice", "step-call", "step-session"][step - 1], "failed");
    if (step === 1) setText("config-status", "failed", "state-failed");
    if (step === 3) setText("call-status", "failed", "state-failed");
    showError(step ? `Step ${step} (${names[step]}): ${err.message}` : `Unexpected error: ${err && err.message}`);
    console.error(err);
    releasePeer();
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
    $("connect-only").disabled = !state.config;
  }
}

function start() {
  return runSteps(async () => {
    resetView();
    await fetchSessionConfig();
    $("hangup").disabled = false;
    await connect();
  });
}

function fetchOnly() {
  return runSteps(async () => {
    resetView();
    await fetchSessionConfig();
  });
}

function connectOnly() {
  return runSteps(async () => {
    const config = state.config;
    resetView();
    state.config = config;
    stepClass("step-config", "done");
    tickExpiry();
    addTimer(setInterval(tickExpiry, 250));
    $("hangup").disabled = false;
    await connect();
  });
}

async function init() {
  try {
    const response = await fetch("/dev/config.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    state.dev = await response.json();
  } catch (err) {
    showError(`The dev server is unreachable (/dev/config.json: ${err.message}). Is orga-ai dev still running?`);
    return;
  }
  setText("orga-base-url", state.dev.orgaBaseUrl);
  setText("calls-url", state.dev.orgaBaseUrl + CALLS_PATH);
  setText("session-endpoint", state.dev.sessionEndpoint);
  setText("backend-badge", state.dev.emulator ? "local emulator" : "Orga Cloud (real sessions)",
    state.dev.emulator ? "badge emulator" : "badge cloud");
  setText("policy-badge", relayOnly ? "ICE: relay only (TURN)" : "ICE: all", "badge");
  $("start").addEventListener("click", start);
  $("fetch-only").addEventListener("click", fetchOnly);
  $("connect-only").addEventListener("click", connectOnly);
  $("hangup").addEventListener("click", hangUp);
  $("start").disabled = false;
  $("fetch-only").disabled = false;
  document.body.dataset.ready = "true";
  if (query.get("autostart") === "1") start();
}

window.addEventListener("pagehide", hangUp);
document.addEventListener("DOMContentLoaded", init);
