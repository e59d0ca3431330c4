"use strict";
// The asyncrag page: ask (streamed over SSE), upload and follow the ingest job, see the collection.
// Plain DOM; untrusted text only ever goes in through textContent.

const $ = (id) => document.getElementById(id);
let apiKey = sessionStorage.getItem("asyncrag-key") || "";
let currentSources = [];

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey) headers.set("Authorization", `Bearer ${apiKey}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    $("key-form").hidden = false;
    $("api-key").focus();
    throw new Error("This server needs an API key: enter it below.");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not our JSON */ }
    throw new Error(message);
  }
  return response;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function showError(error) {
  $("error").textContent = error ? String(error.message || error) : "";
  $("error").hidden = !error;
}

async function loadStats() {
  try {
    const s = await (await api("/v1/stats")).json();
    $("stats").textContent =
      `${s.name}: ${plural(s.documents, "document")} · ${plural(s.chunks, "chunk")} · ${s.embed_model || "?"}`;
  } catch (error) {
    $("stats").textContent = "Collection unavailable";
    showError(error);
  }
}

async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message", data = "";
      for (const line of frame.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      yield [event, JSON.parse(data)];
    }
  }
}

function citationLabel(source, full = false) {
  const name = full ? source.source : source.source.split(/[\\/]/).pop();
  const ocr = source.ocr ? " (OCR)" : "";
  if (source.page) return `${name}, page ${source.page}${ocr}`;
  return (source.anchor ? `${name}#${source.anchor}` : name) + ocr;
}

function openPassage(n) {
  const source = currentSources[n - 1];
  if (!source) return;
  $("passage-title").textContent = `[${n}] ${citationLabel(source, true)}`;
  $("passage-score").textContent = `similarity ${source.score.toFixed(3)}`;
  $("passage-text").textContent = source.text.trim();
  $("passage").showModal();
}

function citeButton(n) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "cite";
  button.textContent = `[${n}]`;
  button.setAttribute("aria-label", `Open source ${n}`);
  button.addEventListener("click", () => openPassage(n));
  return button;
}

function renderAnswer(text) {
  const box = $("answer");
  box.replaceChildren();
  // A quotation (“...”) is the document's own words: a [2] inside it is not a citation.
  for (const piece of text.split(/(“[^”]*”)/)) {
    if (piece.startsWith("“")) {
      box.append(document.createTextNode(piece));
      continue;
    }
    for (const part of piece.split(/(\[\d+\])/)) {
      const n = Number((part.match(/^\[(\d+)\]$/) || [])[1]);
      box.append(n >= 1 && n <= currentSources.length ? citeButton(n) : document.createTextNode(part));
    }
  }
}

function renderSources(sources) {
  currentSources = sources;
  $("sources-title").hidden = sources.length === 0;
  $("sources").replaceChildren(...sources.map((source, i) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `[${i + 1}] ${citationLabel(source)}`;
    button.title = source.source;
    button.addEventListener("click", () => openPassage(i + 1));
    item.append(button);
    return item;
  }));
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  showError(null);
  $("ask-button").disabled = true;
  $("answer-box").hidden = false;
  $("answer").textContent = "";
  $("llm-note").hidden = true;
  renderSources([]);
  try {
    const response = await api("/v1/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ question, stream: true }),
    });
    let text = "";
    for await (const [name, data] of sseEvents(response)) {
      if (name === "token") {
        text += data.text;
        $("answer").textContent = text;
      } else if (name === "sources") {
        renderSources(data);
      } else if (name === "done") {
        renderAnswer(data.answer);
        const llm = data.llm;
        $("llm-note").hidden = data.method === "generated";
        $("llm-note").textContent = llm.error
          ? `The language model's answer was not used (${llm.error}); quoted from the sources instead.`
          : "Quoted from the sources.";
      }
    }
  } catch (error) {
    showError(error);
  } finally {
    $("ask-button").disabled = false;
  }
}

async function upload(event) {
  event.preventDefault();
  const files = $("files").files;
  if (!files.length) return;
  showError(null);
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  $("upload-button").disabled = true;
  try {
    let job = await (await api("/v1/documents", { method: "POST", body: form })).json();
    $("job").hidden = false;
    $("job-files").replaceChildren();
    while (job.status === "queued" || job.status === "running") {
      showJob(job);
      await new Promise((resolve) => setTimeout(resolve, 400));
      job = await (await api(`/v1/jobs/${encodeURIComponent(job.id)}`)).json();
    }
    showJob(job);
    $("files").value = "";
    loadStats();
  } catch (error) {
    showError(error);
  } finally {
    $("upload-button").disabled = false;
  }
}

function showJob(job) {
  $("job-progress").max = Math.max(job.files_total, 1);
  $("job-progress").value = job.status === "done" ? job.files_total : job.files_done;
  const words = { queued: "Queued behind another upload", running: "Ingesting", done: "Done", failed: "Failed",
                  cancelled: "Cancelled" };
  let status = `${words[job.status]}: ${job.files_done} of ${plural(job.files_total, "file")}, ${plural(job.chunks, "chunk")}`;
  if (job.report) {
    const failed = job.report.failures.length;
    status = `${words[job.status]}: ${plural(job.report.files, "file")} ingested (${plural(job.report.chunks, "chunk")})` +
      (failed ? `, ${failed} failed` : "");
  }
  if (job.error) status += ` (${job.error})`;
  $("job-status").textContent = status;
  if (!job.report) return;
  const failed = new Map(job.report.failures.map((f) => [f.path, f.reason]));
  $("job-files").replaceChildren(...job.files.map((id) => {
    const item = document.createElement("li");
    const name = id.slice(id.indexOf("/") + 1);
    item.className = failed.has(id) ? "failed" : "ok";
    item.textContent = failed.has(id) ? `${name}: ${failed.get(id)}` : `${name}: ingested`;
    return item;
  }));
}

function useKey(event) {
  event.preventDefault();
  apiKey = $("api-key").value.trim();
  sessionStorage.setItem("asyncrag-key", apiKey);
  $("key-form").hidden = true;
  showError(null);
  loadStats();
}

$("ask-form").addEventListener("submit", ask);
$("upload-form").addEventListener("submit", upload);
$("key-form").addEventListener("submit", useKey);
loadStats();
