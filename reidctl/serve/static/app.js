// The search page: a query image (upload, drop or paste), the ranked hits, searches from a
// hit along an investigation trail, and the filters of the web API.

import * as api from "./api.js";
import { hitCard, trailItem, when } from "./view.js";

const $ = (id) => document.getElementById(id);
const LIST_FILTERS = ["camera", "exclude_camera", "source"];
const TIME_FILTERS = ["after", "before"];

const state = {
  info: null, // GET /api/info
  trail: [], // steps: {kind: "upload", file, name, preview, person, camera} | {kind: "stored", ...hit}
  seq: 0, // the latest search; older answers are dropped
  seen: { camera: new Set(), source: new Set() },
};

// --- connecting -----------------------------------------------------------------------

async function connect() {
  try {
    state.info = await api.getJson("api/info");
  } catch (e) {
    if (e.status === 401) return; // the token is asked for (see whenUnauthorized)
    $("gallery-info").textContent = `Cannot read the gallery: ${e.message}`;
    return;
  }
  $("token-panel").hidden = true;
  $("app").hidden = false;
  const i = state.info;
  const threshold = i.threshold == null
    ? "no “no match” threshold: the nearest images are always shown"
    : `“no match” beyond distance ${i.threshold.toFixed(3)}`;
  $("gallery-info").textContent = `${i.collection} · ${i.images.toLocaleString()} images · `
    + `model ${i.model.backbone} · ${threshold}`;
}

function askToken(message) {
  $("app").hidden = true;
  $("token-panel").hidden = false;
  $("gallery-info").textContent = "Not connected";
  $("token-error").textContent = message;
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!token) return;
  api.setToken(token);
  api.forgetImages();
  $("token-input").value = "";
  connect();
});

api.whenUnauthorized(() => {
  const sent = api.getToken();
  api.clearToken();
  askToken(sent ? "The server refused the token: enter it again." : "");
});

// --- the query --------------------------------------------------------------------------

function startUpload(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    return say(`${file.name} is not an image file.`, true);
  }
  const limit = state.info?.limits?.max_upload_bytes;
  if (limit && file.size > limit) {
    return say(`${file.name} is too large: the limit is ${limit.toLocaleString()} bytes.`, true);
  }
  for (const step of state.trail) if (step.preview) URL.revokeObjectURL(step.preview);
  const name = file.name || "pasted image";
  state.trail = [{ kind: "upload", file, name, preview: URL.createObjectURL(file) }];
  search();
}

function searchFrom(hit) {
  state.trail.push({ kind: "stored", ...hit });
  search({ focusResults: true });
}

function goBack(index) {
  state.trail = state.trail.slice(0, index + 1);
  search({ focusResults: true });
}

$("file").addEventListener("change", (event) => {
  startUpload(event.target.files[0]);
  event.target.value = ""; // choosing the same file again searches again
});

const drop = $("drop");
document.addEventListener("dragover", (event) => {
  event.preventDefault(); // a file dropped anywhere is a query, never a page change
  drop.classList.add("over");
});
document.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) drop.classList.remove("over");
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if ($("app").hidden) return;
  const file = [...(event.dataTransfer?.files || [])][0];
  if (file) startUpload(file);
  else say("Drop an image file.", true);
});
document.addEventListener("paste", (event) => {
  if ($("app").hidden) return;
  const item = [...(event.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
  if (item) startUpload(item.getAsFile());
});

// --- searching --------------------------------------------------------------------------

function filterValues() {
  const params = new URLSearchParams();
  for (const name of LIST_FILTERS) {
    for (const value of $(name).value.split(",").map((v) => v.trim()).filter(Boolean)) {
      params.append(name, value);
    }
  }
  for (const name of TIME_FILTERS) {
    if ($(name).value) params.set(name, $(name).value); // no zone: the server reads UTC
  }
  return params;
}

function readK() {
  const k = Number($("k").value);
  return Number.isInteger(k) && k >= 1 && k <= 1000 ? k : null;
}

async function search({ focusResults = false } = {}) {
  const step = state.trail.at(-1);
  if (!step) return say("Choose a query image first.", true);
  const k = readK();
  if (k === null) {
    $("k").setAttribute("aria-invalid", "true");
    return say("Results must be a whole number from 1 to 1000.", true);
  }
  $("k").removeAttribute("aria-invalid");
  const filters = filterValues();
  const params = new URLSearchParams(filters);
  params.set("k", String(k));
  const seq = ++state.seq;
  showQuery(step);
  showTrail();
  $("main").setAttribute("aria-busy", "true");
  say(`Searching with ${step.name}…`);
  let result;
  try {
    if (step.kind === "upload") {
      const form = new FormData();
      form.append("image", step.file, step.name);
      result = await api.getJson(`api/search?${params}`, form);
      step.person = result.query_person || "";
      step.camera = result.query_camera || "";
    } else {
      params.set("exclude_self", "true");
      result = await api.getJson(`api/search/${step.id}?${params}`);
    }
  } catch (e) {
    if (seq !== state.seq) return;
    answered(seq);
    if (e.status !== 401) say(`Search failed: ${e.message}`, true);
    return;
  }
  if (seq !== state.seq) return;
  answered(seq);
  showQuery(step);
  showTrail();
  showResult(step, result, filters.size > 0);
  if (focusResults) $("results-title").focus();
}

// --- showing ----------------------------------------------------------------------------

function answered(seq) {
  const main = $("main");
  main.removeAttribute("aria-busy");
  main.dataset.answered = String(seq); // the latest search answered (a hook for automation)
}

function say(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function showQuery(step) {
  const img = $("query-img");
  if (step.kind === "upload") {
    img.src = step.preview;
  } else {
    img.removeAttribute("src");
    api.showImage(img, step.image_url);
  }
  const where = step.kind === "upload" ? "Uploaded" : "Stored image";
  let person = ""; // an upload's person is known once the server has read its name
  if (step.person) {
    person = `person ${step.person}${step.kind === "upload" ? " (from the file name)" : ""}`;
  } else if (step.person !== undefined) {
    person = "person unknown";
  }
  const details = [person, step.camera && `camera ${step.camera}`,
    step.kind === "stored" && step.time && `${when(step.time)} UTC`].filter(Boolean).join(" · ");
  const caption = $("query-caption");
  caption.replaceChildren();
  const title = document.createElement("strong");
  title.textContent = `${where}: ${step.name}`;
  caption.append(title);
  if (details) caption.append(document.createElement("br"), details);
  $("query").hidden = false;
}

function showTrail() {
  const list = $("trail");
  list.replaceChildren(...state.trail.map((step, i) => trailItem(step, i, i === state.trail.length - 1,
    () => goBack(i))));
}

function showResult(step, result, filtered) {
  const hits = result.hits;
  for (const h of hits) {
    if (h.camera) state.seen.camera.add(h.camera);
    if (h.source) state.seen.source.add(h.source);
  }
  fillList("cameras", state.seen.camera);
  fillList("sources", state.seen.source);
  const known = step.person || "";
  $("results").replaceChildren(...hits.map((h) => hitCard(h, known, result.no_match === true,
    () => searchFrom(h))));
  const ms = Math.round(result.ms.total);
  const noun = hits.length === 1 ? "result" : "results";
  say(`${hits.length} ${noun} for ${step.name} (${ms} ms).`);
  showVerdict(result, filtered);
  $("legend").hidden = !(known && hits.some((h) => h.person));
  const warnings = $("warnings");
  warnings.replaceChildren(...result.warnings.map((w) => {
    const li = document.createElement("li");
    li.textContent = w;
    return li;
  }));
  warnings.hidden = result.warnings.length === 0;
}

/** A distance with 3 decimals; the API sends an infinite one as null. */
const fixed = (x) => (x == null ? "∞" : x.toFixed(3));

function showVerdict(result, filtered) {
  const box = $("verdict");
  box.className = "verdict";
  box.replaceChildren();
  const line = (strong, text) => {
    const b = document.createElement("strong");
    b.textContent = strong;
    box.append(b, ` ${text}`);
  };
  if (result.hits.length === 0) {
    box.classList.add("empty");
    if (filtered) line("No stored image passes these filters.", "Widen or clear them.");
    else line("The gallery holds no image.", "Ingest images first.");
  } else if (result.no_match === true) {
    box.classList.add("nomatch");
    line("No match.", `The nearest image is at distance ${fixed(result.best_distance)}, `
      + `beyond the threshold ${fixed(result.threshold)}: this person is most likely not `
      + "in the gallery. The nearest images are shown below for review.");
  } else if (result.no_match === false) {
    box.classList.add("match");
    line("Match.", `The best image is at distance ${fixed(result.best_distance)}, within `
      + `the threshold ${fixed(result.threshold)}.`);
  } else {
    box.hidden = true;
    return;
  }
  box.hidden = false;
}

function fillList(id, values) {
  $(id).replaceChildren(...[...values].sort().map((v) => {
    const option = document.createElement("option");
    option.value = v;
    return option;
  }));
}

// --- the settings -----------------------------------------------------------------------

$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  search();
});

$("clear").addEventListener("click", () => {
  for (const name of [...LIST_FILTERS, ...TIME_FILTERS]) $(name).value = "";
  if (state.trail.length) search();
});

connect();
