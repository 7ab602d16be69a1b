// The subject's page: start or resume a session, show one image at a time, post answers.
// The session token lives in this tab's sessionStorage, so a reload resumes the session.
"use strict";

const TOKEN = "turing_token";
let state = null;     // the server's state: {subject, arm, total, answered, next}
let shownAt = null;   // performance.now() when the current image finished loading
let busy = false;

const $ = (id) => document.getElementById(id);

function show(section) {
  for (const id of ["start", "trial", "done"]) $(id).hidden = id !== section;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function api(method, path, body) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN);
  if (token) headers["X-Session-Token"] = token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok) throw Object.assign(new Error(data.error || response.statusText), {status: response.status});
  return data;
}

function setButtons(enabled) {
  $("answer-real").disabled = !enabled;
  $("answer-fake").disabled = !enabled;
}

function render(newState) {
  state = newState;
  $("progress").max = state.total;
  $("progress").value = state.answered;
  $("count").textContent = `${state.answered} / ${state.total}`;
  if (!state.next) {
    $("done-text").textContent = `All ${state.total} answers are recorded. Thank you, ${state.subject}.`;
    show("done");
    return;
  }
  $("fake-label").textContent = state.arm === "synthetic" ? "Synthetic" : "Refined";
  show("trial");
  setButtons(false);
  shownAt = null;
  const img = $("image");
  img.onload = () => { shownAt = performance.now(); setButtons(true); };
  img.src = `/image/${state.next.image}.png`;
}

async function answer(kind) {
  if (busy || !state || !state.next || shownAt === null) return;
  busy = true;
  setButtons(false);
  const timeMs = performance.now() - shownAt;
  try {
    const answer = kind === "real" ? "real" : state.arm;
    render(await api("POST", "/api/answer", {trial_id: state.next.trial_id, answer, time_ms: timeMs}));
    showError("");
  } catch (e) {
    showError(e.message);
    if (e.status === 409) {
      render(await api("GET", "/api/state"));  // e.g. answered in another tab
    } else if (e.status === 401 || e.status === 403) {
      sessionStorage.removeItem(TOKEN);  // a stale token: start again with the subject id
      show("start");
    } else {
      setButtons(true);
    }
  } finally {
    busy = false;
  }
}

async function start(event) {
  event.preventDefault();
  try {
    const data = await api("POST", "/api/start", {subject: $("subject").value.trim(), arm: $("arm").value});
    sessionStorage.setItem(TOKEN, data.token);
    showError("");
    render(data);
  } catch (e) {
    showError(e.message);
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  $("start-form").addEventListener("submit", start);
  $("answer-real").addEventListener("click", () => answer("real"));
  $("answer-fake").addEventListener("click", () => answer("fake"));
  document.addEventListener("keydown", (e) => {
    if ($("trial").hidden || e.repeat) return;
    if (e.key === "r" || e.key === "R" || e.key === "ArrowLeft") answer("real");
    if (e.key === "f" || e.key === "F" || e.key === "ArrowRight") answer("fake");
  });
  if (sessionStorage.getItem(TOKEN)) {
    try {
      render(await api("GET", "/api/state"));
      return;
    } catch (e) {
      sessionStorage.removeItem(TOKEN);
    }
  }
  show("start");
});
