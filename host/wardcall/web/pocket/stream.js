// The host's event stream (Server-Sent Events, /api/events) read with fetch, so that every
// reconnect says where this phone left off (the Last-Event-ID header) and the host can replay
// what it missed instead of a whole snapshot. EventSource sends that header only on its own
// retries, and a page that must drop a stream it cannot trust (a link gone quiet while roaming
// between access points) loses it with the EventSource.

/**
 * Open the stream. onEvent(name, data, id) for each event (data parsed as JSON); onEnd({status, why})
 * once, when it ends for any reason but close(). Returns {close()}.
 */
export function openStream(url, lastId, onEvent, onEnd) {
  const ctl = new AbortController();
  let closed = false;
  const headers = { Accept: "text/event-stream" };
  if (lastId !== null && lastId !== undefined && lastId !== "") headers["Last-Event-ID"] = String(lastId);
  const stream = {
    lastId,
    heard: Date.now(),             // when anything (an event or a keepalive) last arrived
    close() { closed = true; ctl.abort(); },
  };
  const end = (info) => { if (!closed) { closed = true; onEnd(info); } };

  (async () => {
    let res;
    try {
      res = await fetch(url, { headers, credentials: "same-origin", cache: "no-store", signal: ctl.signal });
    } catch (err) {
      end({ status: 0, why: "the host cannot be reached" });
      return;
    }
    if (!res.ok || !res.body) {
      end({ status: res.status, why: `the host answered ${res.status}` });
      return;
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "", name = "", data = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        stream.heard = Date.now();
        buffer += value;
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          let line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          if (line.endsWith("\r")) line = line.slice(0, -1);
          if (line === "") {                       // the end of one event
            if (data.length && !closed) {
              let payload = null;
              try { payload = JSON.parse(data.join("\n")); } catch { payload = null; }
              if (payload !== null) onEvent(name || "message", payload, stream.lastId);
            }
            name = "";
            data = [];
            continue;
          }
          if (line.startsWith(":")) continue;     // a keepalive comment
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (field === "event") name = text;
          else if (field === "data") data.push(text);
          else if (field === "id" && !text.includes("\0")) stream.lastId = text;
        }
      }
    } catch {
      /* aborted, or the connection broke */
    }
    end({ status: 0, why: "the event stream ended" });
  })();
  return stream;
}
