// vocalsep's page: upload a song, follow its job through the JSON API, show the results.
// No framework, no external asset. The page's state is also in <body data-state="..."> (idle,
// uploading, queued, running, done, failed), which the browser test reads.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 400;
let maxUpload = null;   // bytes, from /api/health
let current = null;     // id of the job shown

function setState(state) { document.body.dataset.state = state; }

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() { $("error").hidden = true; $("error").textContent = ""; }

function megabytes(bytes) { return (bytes / 1048576).toFixed(bytes < 10 * 1048576 ? 1 : 0); }

function setProgress(fraction, text) {
  $("job").hidden = false;
  if (fraction === null) $("progress").removeAttribute("value");
  else $("progress").value = Math.max(0, Math.min(1, fraction));
  $("status").textContent = text;
}

// The server's message ({"detail": "..."}) or a description of what went wrong.
function detailOf(xhrOrBody, status) {
  const body = xhrOrBody && typeof xhrOrBody === "object" ? xhrOrBody : null;
  if (body && typeof body.detail === "string") return body.detail;
  return `The server answered ${status}.`;
}

async function loadHealth() {
  try {
    const response = await fetch("/api/health");
    const health = await response.json();
    maxUpload = health.max_upload;
    $("model").textContent = `model: ${health.model} · ${health.workers} worker${health.workers > 1 ? "s" : ""}`;
    $("model").hidden = false;
    $("limits").textContent = `wav, flac, ogg, mp3, m4a, stem.mp4 … up to ${megabytes(maxUpload)} MB` +
      ` and ${health.max_minutes} min (of 48 kHz stereo)`;
  } catch (err) {
    showError("The server does not answer (is `vocalsep serve` still running?).");
  }
}

// While a job runs, its accompaniment can be played as it is separated (GET .../live).
function showLive(id) {
  const player = $("live-player");
  const src = `/api/jobs/${encodeURIComponent(id)}/live`;
  if (player.getAttribute("src") !== src) player.src = src;
  $("live").hidden = false;
}

function hideLive() {
  const player = $("live-player");
  if (!player.paused) return;  // someone is listening: let it play to the end
  player.removeAttribute("src");
  $("live").hidden = true;
}

function resetResults() {
  $("live-player").pause();
  hideLive();
  $("results").hidden = true;
  for (const stem of ["vocals", "accompaniment"]) {
    $(stem).removeAttribute("src");
    $(`${stem}-download`).removeAttribute("href");
  }
  for (const name of ["input", "vocals"]) $(`spectrogram-${name}`).removeAttribute("src");
}

function upload(file) {
  clearError();
  resetResults();
  current = null;
  $("filename").textContent = file.name;
  if (file.size === 0) {
    setState("failed");
    showError(`${file.name}: the file is empty (0 bytes).`);
    return;
  }
  if (maxUpload !== null && file.size > maxUpload) {
    setState("failed");
    showError(`${file.name} is ${megabytes(file.size)} MB: the limit is ${megabytes(maxUpload)} MB.`);
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/jobs");
  xhr.responseType = "json";
  setState("uploading");
  setProgress(0, "uploading… 0%");
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) setProgress(0, `uploading… ${Math.round(100 * e.loaded / e.total)}%`);
  };
  xhr.onload = () => {
    if (xhr.status === 202 && xhr.response && xhr.response.id) {
      current = xhr.response.id;
      history.replaceState(null, "", `#${current}`);
      follow(current);
    } else {
      setState("failed");
      setProgress(0, "refused");
      showError(detailOf(xhr.response, xhr.status));
    }
  };
  xhr.onerror = () => {
    setState("failed");
    setProgress(0, "upload failed");
    showError("The upload failed: the connection to the server was lost" +
              (maxUpload !== null ? ` (the limit is ${megabytes(maxUpload)} MB).` : "."));
  };
  xhr.send(form);
}

async function follow(id) {
  if (id !== current) return;  // another upload replaced this one
  let response;
  try {
    response = await fetch(`/api/jobs/${encodeURIComponent(id)}`);
  } catch (err) {
    setProgress(null, "reconnecting…");
    setTimeout(() => follow(id), 2 * POLL_MS);
    return;
  }
  const job = await response.json().catch(() => null);
  if (!response.ok || !job) {
    setState("failed");
    showError(response.status === 404 ? "This job does not exist (any more)." : detailOf(job, response.status));
    return;
  }
  $("filename").textContent = job.filename;
  setState(job.status);
  if (job.status === "queued") {
    setProgress(0, "waiting for a free worker…");
    showLive(id);
  } else if (job.status === "running") {
    setProgress(job.progress, `separating… ${Math.round(100 * job.progress)}%`);
    showLive(id);
  } else if (job.status === "failed") {
    hideLive();
    setProgress(job.progress, "failed");
    showError(job.error || "The separation failed.");
    return;
  } else if (job.status === "done") {
    const took = job.finished && job.started ? ` in ${(job.finished - job.started).toFixed(1)} s` : "";
    setProgress(1, `done${took}`);
    hideLive();
    showResults(job);
    return;
  }
  setTimeout(() => follow(id), POLL_MS);
}

function showResults(job) {
  const base = job.filename.replace(/\.[^.]*$/, "");
  for (const stem of ["vocals", "accompaniment"]) {
    $(stem).src = job.urls[stem];
    const link = $(`${stem}-download`);
    link.href = `${job.urls[stem]}?download=1`;
    link.download = `${base} - ${stem}.wav`;
  }
  $("spectrogram-input").src = job.urls.spectrogram_input;
  $("spectrogram-vocals").src = job.urls.spectrogram_vocals;
  $("results").hidden = false;
}

function setUpDropZone() {
  const zone = $("drop");
  const over = (on) => (e) => { e.preventDefault(); zone.classList.toggle("over", on); };
  zone.addEventListener("dragenter", over(true));
  zone.addEventListener("dragover", over(true));
  zone.addEventListener("dragleave", over(false));
  zone.addEventListener("drop", (e) => {
    over(false)(e);
    const files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length) upload(files[0]);
  });
  // a file dropped beside the zone must not make the browser leave the page
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  $("file").addEventListener("change", (e) => {
    if (e.target.files.length) upload(e.target.files[0]);
    e.target.value = "";  // choosing the same file again starts a new job
  });
}

setUpDropZone();
loadHealth();
const fromUrl = location.hash.slice(1);
if (/^[A-Za-z0-9_-]{22}$/.test(fromUrl)) {  // a reload resumes following the job
  current = fromUrl;
  follow(fromUrl);
}
