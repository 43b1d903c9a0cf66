// The ImageBatch page: upload, add URLs, and watch batches and recent images update by polling.
// Plain browser JavaScript, no build step. All data is inserted with textContent, never as HTML.
// Where the api needs a caller (AUTH_MODE kubernetes or token) the page asks for a token, keeps it
// in this browser's localStorage and sends it as `Authorization: Bearer` with each request.
"use strict";

const REFRESH_MS = 2000;
const RECENT_LIMIT = 24;

const $ = (id) => document.getElementById(id);
const rel = (url) => url.replace(/^\//, ""); // relative, so the page also works under a path prefix

// ---- the caller's token -----------------------------------------------------------------------

const TOKEN_KEY = "imagebatch.token";

function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

function withToken(headers = {}) {
  const value = token();
  return value ? { ...headers, Authorization: `Bearer ${value}` } : headers;
}

function askForToken(message) {
  $("token-form").hidden = false;
  $("token-note").textContent = message;
}

// fetch() with the token; a 401 shows the token field with the api's reason.
async function call(url, options = {}) {
  const response = await fetch(url, { ...options, headers: withToken(options.headers) });
  if (response.status === 401) {
    askForToken(token() ? "The api refused this token." : "The api needs a token.");
  }
  return response;
}

function setUpToken() {
  if (token()) $("token-form").hidden = false;
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token").value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    $("token-note").textContent = value ? "Token saved in this browser." : "";
    refresh();
  });
  $("token-forget").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    $("token-note").textContent = "Token forgotten.";
    refresh();
  });
}

async function problemText(response) {
  try {
    const body = await response.json();
    return body.detail || response.statusText;
  } catch {
    return response.statusText || `HTTP ${response.status}`;
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---- recent images ----------------------------------------------------------------------------

const tiles = new Map(); // job id -> {node, status}

function tileLabel(job) {
  if (job.filename) return job.filename;
  if (job.url.startsWith("upload:")) return "upload " + job.id.slice(0, 8);
  try {
    const path = new URL(job.url).pathname.split("/").filter(Boolean);
    return path.length ? decodeURIComponent(path[path.length - 1]) : job.url;
  } catch {
    return job.id;
  }
}

function buildTile(job) {
  const li = el("li", "tile");
  li.dataset.id = job.id;
  li.dataset.status = job.status;
  const frame = el("div", "frame");
  if (job.status === "completed" && job.thumbnail_url) {
    const img = el("img");
    img.alt = "thumbnail of " + tileLabel(job);
    showThumbnail(img, rel(job.thumbnail_url));
    frame.append(img);
  } else {
    frame.textContent = job.status === "failed" ? "failed" : job.status + "…";
  }
  const meta = el("div", "meta");
  const label = el("span", "label", tileLabel(job));
  label.title = job.url;
  meta.append(label, el("span", "badge " + job.status, job.status));
  li.append(frame, meta);
  if (job.error) li.append(el("div", "error", job.error));
  return li;
}

// An <img src> sends no Authorization header: the thumbnail is fetched with the token instead.
async function showThumbnail(img, url) {
  const response = await call(url);
  if (!response.ok) return;
  img.src = URL.createObjectURL(await response.blob());
  img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
}

function renderRecent(data) {
  for (const [state, n] of Object.entries(data.counts)) {
    const cell = document.querySelector(`[data-count="${state}"]`);
    if (cell) cell.textContent = String(n);
  }
  const list = $("recent");
  const seen = new Set();
  let previous = null;
  for (const job of data.items) {
    seen.add(job.id);
    let entry = tiles.get(job.id);
    if (!entry || entry.status !== job.status) {
      const node = buildTile(job);
      if (entry) entry.node.replaceWith(node);
      entry = { node, status: job.status };
      tiles.set(job.id, entry);
    }
    const want = previous ? previous.nextSibling : list.firstChild;
    if (want !== entry.node) list.insertBefore(entry.node, want);
    previous = entry.node;
  }
  for (const [id, entry] of tiles) {
    if (!seen.has(id)) {
      entry.node.remove();
      tiles.delete(id);
    }
  }
  $("recent-note").textContent = data.items.length ? "" : "No images yet: upload one above.";
  watchMine(data.items);
}

// ---- batches ----------------------------------------------------------------------------------

const retryNotes = new Map(); // batch name -> what its last "Retry failed" click got
let lastBatches = [];

// POST batches/{name}/retry: the operator sends the batch's failed items back to work.
async function retryFailed(name, namespace, button) {
  button.disabled = true;
  retryNotes.set(name, { text: "Asking for a retry…", error: false });
  renderBatches(lastBatches, namespace);
  const url = `batches/${encodeURIComponent(name)}/retry?namespace=${encodeURIComponent(namespace)}`;
  const response = await call(url, { method: "POST" });
  retryNotes.set(
    name,
    response.status === 202
      ? { text: `Retry requested (${(await response.json()).request}).`, error: false }
      : { text: await problemText(response), error: true }
  );
  renderBatches(lastBatches, namespace);
}

function renderBatches(batches, namespace) {
  lastBatches = batches;
  const list = $("batches");
  list.replaceChildren();
  for (const b of batches) {
    const li = el("li", "batch");
    li.dataset.name = b.name;
    const top = el("div", "top");
    top.append(el("span", "name", b.name), el("span", "phase " + (b.phase || ""), b.phase || "New"));
    const bar = el("div", "bar");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", String(b.percent));
    const ok = el("span", "ok");
    const bad = el("span", "bad");
    ok.style.width = b.total ? `${(100 * b.succeeded) / b.total}%` : "0";
    bad.style.width = b.total ? `${(100 * b.failed) / b.total}%` : "0";
    bar.append(ok, bad);
    const numbers = el(
      "div",
      "numbers",
      `${b.progress || `${b.succeeded + b.failed}/${b.total}`} · ${b.succeeded} succeeded · ` +
        `${b.failed} failed · ${b.queued} queued · ${b.workers} worker(s)`
    );
    li.append(top, bar, numbers);
    const note = retryNotes.get(b.name);
    if (b.failed > 0 || note) {
      const actions = el("div", "actions");
      if (b.failed > 0) {
        const button = el("button", "retry", "Retry failed");
        button.type = "button";
        button.title = `Send the ${b.failed} failed item(s) back to work`;
        button.disabled = note !== undefined && note.text === "Asking for a retry…";
        button.addEventListener("click", () => retryFailed(b.name, namespace, button));
        actions.append(button);
      }
      if (note) actions.append(el("span", "retry-note" + (note.error ? " error" : ""), note.text));
      li.append(actions);
    }
    list.append(li);
  }
}

// ---- polling ----------------------------------------------------------------------------------

async function refreshRecent() {
  const response = await call(`images?limit=${RECENT_LIMIT}`, { cache: "no-store" });
  if (!response.ok) {
    $("recent-note").textContent = await problemText(response);
    return;
  }
  renderRecent(await response.json());
}

async function refreshBatches() {
  const response = await call("batches", { cache: "no-store" });
  if (!response.ok) {
    renderBatches([], "");
    $("batches-note").textContent = await problemText(response);
    return;
  }
  const data = await response.json();
  renderBatches(data.items, data.namespace);
  $("batches-note").textContent = data.items.length
    ? `Namespace ${data.namespace}`
    : `No ImageBatch in namespace ${data.namespace}.`;
}

async function refresh() {
  await Promise.allSettled([refreshRecent(), refreshBatches()]);
}

async function loop() {
  try {
    await refresh();
  } finally {
    setTimeout(loop, REFRESH_MS);
  }
}

// ---- upload and URL forms ---------------------------------------------------------------------

const mine = new Map(); // id -> status element text of jobs submitted from this page

function watchMine(items) {
  for (const job of items) {
    if (!mine.has(job.id) || mine.get(job.id) === job.status) continue;
    mine.set(job.id, job.status);
    const target = job.kind === "upload" ? $("upload-status") : $("task-status");
    target.classList.toggle("error", job.status === "failed");
    target.textContent =
      job.status === "completed"
        ? `Thumbnail of ${tileLabel(job)} is ready.`
        : job.status === "failed"
          ? `Failed: ${job.error || "unknown reason"}`
          : `${tileLabel(job)} is ${job.status}…`;
  }
}

function upload(file) {
  const status = $("upload-status");
  const bar = $("upload-progress");
  const button = $("upload-button");
  const form = new FormData();
  form.append("file", file);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "uploads");
  for (const [name, value] of Object.entries(withToken())) xhr.setRequestHeader(name, value);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total;
  };
  xhr.onloadend = () => {
    bar.hidden = true;
    button.disabled = false;
    let body = {};
    try {
      body = JSON.parse(xhr.responseText);
    } catch {}
    if (xhr.status === 401) askForToken(body.detail || "The api needs a token.");
    if (xhr.status === 202) {
      status.classList.remove("error");
      status.textContent = `Uploaded ${file.name}; making the thumbnail…`;
      mine.set(body.id, "pending");
      refresh();
    } else {
      status.classList.add("error");
      status.textContent = body.detail || `Upload failed (HTTP ${xhr.status || "no answer"})`;
    }
  };
  bar.value = 0;
  bar.hidden = false;
  button.disabled = true;
  status.classList.remove("error");
  status.textContent = `Uploading ${file.name}…`;
  xhr.send(form);
}

function setUpForms() {
  const input = $("file");
  const drop = $("drop");
  input.addEventListener("change", () => {
    if (!input.files.length) return;
    const file = input.files[0];
    $("drop-text").textContent = `${Math.ceil(file.size / 1024)} KB, press Upload`;
  });
  $("upload-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.files.length) upload(input.files[0]);
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
  });

  $("task-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const status = $("task-status");
    const url = $("task-url").value.trim();
    const response = await call("tasks", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ url, ops: ["thumbnail"] }),
    });
    if (response.status === 202) {
      const body = await response.json();
      mine.set(body.id, "pending");
      status.classList.remove("error");
      status.textContent = "Queued.";
      $("task-url").value = "";
      refresh();
    } else {
      status.classList.add("error");
      status.textContent = await problemText(response);
    }
  });
}

setUpToken();
setUpForms();
loop();
