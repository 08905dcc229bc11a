// The web API as the page uses it: JSON calls with the bearer token when one is set, and
// images fetched with the same header and shown through blob: URLs (an <img src> cannot
// send a header). The token lives in sessionStorage: this tab only, until it is closed.

const TOKEN_KEY = "reidctl.token";
const MAX_IMAGES = 2000; // blob URLs kept; a result page shows at most 1000

/** An answer other than 2xx: its HTTP status and the server's one-line message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let onUnauthorized = () => {};

/** What to do when the server answers 401 (the token is missing or wrong). */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

function headers() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function send(url, init = {}) {
  let response;
  try {
    response = await fetch(url, { ...init, headers: { ...headers(), ...(init.headers || {}) } });
  } catch {
    throw new ApiError(0, "the server cannot be reached");
  }
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") message = body.error;
  } catch {
    // not JSON: keep the status line
  }
  if (response.status === 401) onUnauthorized(message);
  throw new ApiError(response.status, message);
}

/** GET (or POST with `body`) a JSON endpoint; `url` is relative to the page. */
export async function getJson(url, body) {
  const init = body === undefined ? {} : { method: "POST", body };
  return (await send(url, init)).json();
}

const images = new Map(); // url -> Promise<blob: URL>

/** A blob: URL for a stored image or thumbnail (fetched once, then kept). */
export function imageUrl(url) {
  let found = images.get(url);
  if (found) {
    images.delete(url); // most recently used last
    images.set(url, found);
    return found;
  }
  found = send(url).then((r) => r.blob()).then((blob) => URL.createObjectURL(blob));
  found.catch(() => images.delete(url));
  images.set(url, found);
  while (images.size > MAX_IMAGES) {
    const [oldest, promise] = images.entries().next().value;
    images.delete(oldest);
    promise.then((u) => URL.revokeObjectURL(u), () => {});
  }
  return found;
}

/** Shows the image at `url` in `img` (marked `.broken` when it cannot be read). */
export function showImage(img, url) {
  img.dataset.src = url;
  imageUrl(url).then(
    (blobUrl) => {
      if (img.dataset.src === url) img.src = blobUrl;
    },
    () => img.classList.add("broken"),
  );
}

/** Forgets the images (after the token changed). */
export function forgetImages() {
  for (const promise of images.values()) promise.then((u) => URL.revokeObjectURL(u), () => {});
  images.clear();
}
