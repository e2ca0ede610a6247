// The live page: the streams from /streams, the one chosen (?stream=NAME,
// "default" by default) over /ws/NAME, figures from /connz, drawn calmly.
// Every message and name is shown with textContent: nothing the daemon
// sends is ever interpreted as HTML.
"use strict";

const KEEP = 300;          // messages shown
const POINTS = 180;        // chart: one point a second, three minutes
const LISTED = 20;         // streams listed, the busiest first
const CONTROL = "\u001e";  // first character of the daemon's control messages
const token = new URLSearchParams(location.search).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};

const list = document.getElementById("messages");
const statusBadge = document.getElementById("status");
let chosen = new URLSearchParams(location.search).get("stream") || "default";
let socket = null;
let next = null;           // sequence number of the next stream message
let lastSeen = null;       // last sequence number shown, for resuming
let epoch = null;

function setStatus(text, kind) {
  statusBadge.textContent = text;
  statusBadge.className = "status " + kind;
}

function show(seq, text, kind) {
  const item = document.createElement("li");
  if (kind) item.className = kind;
  const number = document.createElement("span");
  number.className = "seq";
  number.textContent = seq === null ? "" : "#" + seq;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.append(number, body);
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.append(item);
  while (list.childElementCount > KEEP) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
  document.getElementById("shown").textContent = "last " + list.childElementCount;
}

function hexPreview(buffer) {
  const bytes = new Uint8Array(buffer, 0, Math.min(buffer.byteLength, 24));
  const hex = Array.from(bytes, b => b.toString(16).padStart(2, "0")).join(" ");
  return "binary, " + buffer.byteLength + " bytes: " + hex + (buffer.byteLength > 24 ? " …" : "");
}

function control(message) {
  if (message.type === "hello") {
    setStatus("live", "live");
  } else if (message.type === "stream") {
    epoch = message.epoch;
    next = message.next;
  } else if (message.type === "in") {
    next = message.first;
  } else if (message.type === "gap") {
    // Numbers the stream skips: missed, or the client's own (not sent back).
    if (message.last >= message.first) {
      show(null, "missed messages " + message.first + "–" + message.last + " (" + message.reason + ")", "control");
    } else {
      show(null, "the daemon restarted: earlier messages are lost", "control");
    }
    skipTo(message.last);
  } else if (message.type === "own") {
    skipTo(message.last);
  } else if (message.type === "refused") {
    show(null, "refused: " + message.error, "control");
  } else if (message.type === "bye") {
    show(null, "the daemon closed the stream: " + message.reason, "control");
  }
}

// The stream goes on after message "last", which this page will not show.
function skipTo(last) {
  if (next !== null && last >= next) { lastSeen = last; next = last + 1; }
}

function connect() {
  let url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/" + encodeURIComponent(chosen);
  if (lastSeen !== null && epoch !== null) url += "?after=" + encodeURIComponent(chosen + "/" + epoch + "-" + lastSeen);
  const ws = socket = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { if (token) ws.send(token); };
  ws.onmessage = event => {
    if (typeof event.data === "string" && event.data.startsWith(CONTROL)) {
      control(JSON.parse(event.data.slice(1)));
      return;
    }
    const seq = next;
    if (next !== null) { lastSeen = next; next += 1; }
    if (typeof event.data === "string") show(seq, event.data, "");
    else show(seq, hexPreview(event.data), "binary");
  };
  ws.onclose = () => {
    setStatus("reconnecting…", "down");
    setTimeout(connect, 2000);
  };
}

// Show another stream: from its next message, in this page's address too.
function choose(name) {
  if (name === chosen) return;
  chosen = name;
  const address = new URL(location.href);
  address.searchParams.set("stream", name);
  history.replaceState(null, "", address);
  next = lastSeen = epoch = null;
  list.replaceChildren();
  document.getElementById("chosen").textContent = name;
  socket.onclose = null;
  socket.close();
  setStatus("connecting…", "connecting");
  connect();
}

// The streams: /streams every second, the busiest first.
function showStreams(streams) {
  const body = document.getElementById("streams");
  body.replaceChildren();
  for (const s of streams) {
    const row = document.createElement("tr");
    if (s.name === chosen) row.className = "chosen";
    const pick = document.createElement("button");
    pick.type = "button";
    pick.textContent = s.name;
    pick.onclick = () => choose(s.name);
    const name = document.createElement("td");
    name.append(pick);
    const span = s.newest < s.oldest ? "empty" : "#" + s.oldest + "–#" + s.newest;
    const rate = s.rate < 10 ? s.rate.toFixed(1) : human(s.rate);
    row.append(name, cell(rate, "n"), cell(s.subscribers, "n"), cell(span, "n"));
    body.append(row);
  }
}

async function pollStreams() {
  const prefix = document.getElementById("filter").value;
  const query = "?sort=rate&limit=" + LISTED + (prefix ? "&prefix=" + encodeURIComponent(prefix) : "");
  const response = await fetch("/streams" + query, { headers, cache: "no-store" });
  if (response.ok) {
    const data = await response.json();
    showStreams(data.streams);
    document.getElementById("streams-note").textContent =
      data.matched > data.streams.length ? data.streams.length + " of " + data.matched + " shown" : "";
  }
}

// Figures: /connz every second, rates from the counters' differences.
const rates = { messages: [], bytes: [] };
let previous = null;

function human(n) {
  const units = ["", "k", "M", "G", "T"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return (i === 0 ? Math.round(n).toString() : n.toFixed(n < 10 ? 1 : 0)) + units[i];
}

function drawChart() {
  const canvas = document.getElementById("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = Math.round(width * 0.39);
  if (canvas.width !== width * ratio) { canvas.width = width * ratio; canvas.height = height * ratio; }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const pad = { left: 8, right: 8, top: 10, bottom: 18 };
  const w = width - pad.left - pad.right, h = height - pad.top - pad.bottom;
  g.strokeStyle = "#eef0f3"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + (h * i) / 4;
    g.beginPath(); g.moveTo(pad.left, y); g.lineTo(pad.left + w, y); g.stroke();
  }
  g.fillStyle = "#9aa5b1"; g.font = "11px system-ui, sans-serif";
  g.fillText("3 min ago", pad.left, height - 4);
  g.textAlign = "right"; g.fillText("now", pad.left + w, height - 4); g.textAlign = "left";
  const series = [[rates.messages, "#3e7cb1", "msg/s"], [rates.bytes, "#4c9a7b", "B/s"]];
  series.forEach(([values, colour, unit], k) => {
    const top = Math.max(1, ...values) * 1.15;
    g.strokeStyle = colour; g.lineWidth = 2; g.lineJoin = "round";
    g.beginPath();
    values.forEach((v, i) => {
      const x = pad.left + w - ((values.length - 1 - i) * w) / (POINTS - 1);
      const y = pad.top + h - (v / top) * h;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
    g.fillStyle = colour;
    g.fillText("max " + human(top / 1.15) + " " + unit, pad.left + 4 + k * 130, pad.top + 12);
  });
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function showSlowest(connections) {
  const body = document.getElementById("slowest");
  body.replaceChildren();
  if (connections.length === 0) {
    const row = document.createElement("tr");
    row.append(cell("no clients", "quiet"));
    body.append(row);
  }
  for (const c of connections) {
    const row = document.createElement("tr");
    const dot = document.createElement("span");
    dot.className = "dot" + (c.keeping_up ? "" : " lagging");
    dot.title = c.keeping_up ? "keeping up" : "not keeping up";
    const state = document.createElement("td");
    state.append(dot);
    row.append(cell(c.peer), cell(c.protocol), cell(human(c.lag) + "B", "n"), cell(human(c.messages_out), "n"), state);
    body.append(row);
  }
}

async function poll() {
  try {
    const response = await fetch("/connz?sort=lag&limit=8", { headers, cache: "no-store" });
    if (response.status === 401) {
      document.getElementById("figures-note").textContent = "figures need the token: open this page with ?token=…";
      return;
    }
    const data = await response.json();
    const s = data.stats;
    if (previous !== null) {
      const dt = Math.max(0.001, data.now - previous.now);
      rates.messages.push(Math.max(0, (s.messagesIn - previous.stats.messagesIn) / dt));
      rates.bytes.push(Math.max(0, (s.bytesOut - previous.stats.bytesOut) / dt));
      if (rates.messages.length > POINTS) { rates.messages.shift(); rates.bytes.shift(); }
      document.getElementById("rate-messages").textContent = human(rates.messages.at(-1));
      document.getElementById("rate-bytes").textContent = human(rates.bytes.at(-1));
    }
    previous = data;
    document.getElementById("connections").textContent = data.total;
    document.getElementById("newest").textContent = "#" + (s.messagesIn ? (next !== null ? next - 1 : "–") : "–");
    showSlowest(data.connections);
    drawChart();
    await pollStreams();
  } catch (error) {
    setStatus("daemon unreachable", "down");
  }
}

document.getElementById("chosen").textContent = chosen;
connect();
poll();
setInterval(poll, 1000);
window.addEventListener("resize", drawChart);
