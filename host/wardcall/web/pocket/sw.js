// The pocket console's service worker: it keeps the app shell (page, script, style, icons) so the
// page opens — and says it is not connected — where the ward's Wi-Fi does not reach. It never
// touches /api/: calls, state and the event stream always come live from the host.
const CACHE = "wardcall-pocket-2";
const SHELL = [
  "/pocket/", "/pocket/app.js", "/pocket/stream.js", "/pocket/pocket.css", "/pocket/manifest.webmanifest",
  "/pocket/icon-192.png", "/pocket/icon-512.png", "/pocket/icon.svg",
  "/console/dom.js", "/console/sound.js", "/console/calls.js", "/console/hostlink.js",
];
const NETWORK_WAIT_MS = 4000;      // a shell file not answered by then comes from the cache

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

/** The host's copy when it answers (and keep it), else the cached one: a new version shows at once. */
async function shellFile(request, path) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), NETWORK_WAIT_MS);
  try {
    const response = await fetch(request, { signal: ctl.signal, cache: "no-cache" });
    if (response.ok) {
      const copy = response.clone();
      caches.open(CACHE).then((cache) => cache.put(path, copy)).catch(() => {});
      return response;
    }
    return (await caches.match(path)) || response;
  } catch (err) {
    const cached = await caches.match(path);
    if (cached) return cached;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/api/")) return;          // never cached, never answered from here
  const path = url.pathname === "/pocket/index.html" ? "/pocket/" : url.pathname;
  if (!SHELL.includes(path)) return;
  event.respondWith(shellFile(event.request, path));
});
