// The page's repeated parts: a result card and a step of the investigation trail.

import { showImage } from "./api.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A capture time (ISO 8601, UTC) as `2026-03-02 08:00:05` (UTC); "" when unknown. */
export function when(iso) {
  if (!iso) return "";
  return iso.replace("T", " ").replace(/(\.\d+)?Z$/, "");
}

/**
 * One hit as a button that searches from it. Its frame is green when the hit's person is the
 * query's, red when it is another known person, plain when either is unknown; the same is said
 * in words, so that colour is never the only sign.
 */
export function hitCard(hit, queryPerson, dimmed, onPick) {
  const li = el("li");
  const button = el("button", "hit");
  button.type = "button";
  button.dataset.id = hit.id;
  button.dataset.person = hit.person;
  button.dataset.camera = hit.camera;
  button.title = [hit.name, hit.source && `source ${hit.source}`].filter(Boolean).join(" · ");
  let verdict = "";
  if (queryPerson && hit.person) {
    const same = hit.person === queryPerson;
    button.classList.add(same ? "same" : "other");
    verdict = same ? "same person" : "other person";
  }
  if (dimmed) button.classList.add("dimmed");
  const distance = hit.distance == null ? "n/a" : hit.distance.toFixed(3);
  const person = hit.person ? `person ${hit.person}` : "person unknown";
  const camera = hit.camera ? `camera ${hit.camera}` : "camera unknown";
  const time = hit.time ? when(hit.time) : "time unknown";
  button.setAttribute("aria-label", [`Rank ${hit.rank}`, `distance ${distance}`, person, camera,
    hit.time ? `${time} UTC` : time, verdict, "search from this image"].filter(Boolean).join(", "));

  const head = el("span", "head");
  head.append(el("span", "rank", `#${hit.rank}`), el("span", "distance", distance));
  const img = el("img", "thumb");
  img.alt = "";
  img.decoding = "async";
  showImage(img, hit.thumb_url);
  const frame = el("span", "frame");
  frame.append(img);
  const facts = el("span", "facts");
  facts.append(el("span", "person", person), el("span", "camera", camera),
    el("span", "time", time));
  if (hit.source) facts.append(el("span", "source", hit.source));
  button.append(head, frame, facts);
  if (verdict) button.append(el("span", "badge", verdict === "same person" ? "✓ same person"
    : "✗ other person"));
  button.addEventListener("click", onPick);
  li.append(button);
  return li;
}

/** One step of the trail: a button back to it, or the current step. */
export function trailItem(step, index, current, onPick) {
  const li = el("li");
  const node = el(current ? "span" : "button", "crumb");
  if (current) node.setAttribute("aria-current", "step");
  else {
    node.type = "button";
    node.addEventListener("click", onPick);
  }
  const img = el("img", "crumb-thumb");
  img.alt = "";
  if (step.kind === "upload") img.src = step.preview;
  else showImage(img, step.thumb_url);
  const label = step.kind === "upload" ? `Upload ${step.name}` : step.name;
  const who = step.person ? ` · person ${step.person}` : "";
  node.append(img, el("span", "crumb-text", `${index + 1}. ${label}${who}`));
  li.append(node);
  return li;
}
