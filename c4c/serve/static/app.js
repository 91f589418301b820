// The c4c search page: query -> /api/search -> cards; a card plays /api/video/{id} from the moment's start.
// Everything the page shows from the server goes in as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let results = [];          // the moments shown, in rank order
let playing = -1;          // index in results of the moment in the player
let pendingStart = null;   // seconds to seek to once the player's new video has its metadata
let latest = 0;            // number of the newest search: an older answer arriving late is dropped

// One time format everywhere, as `c4c search` prints it: m:ss.s, or h:mm:ss.s past an hour.
function clock(t) {
  const tenths = Math.round(t * 10);
  const h = Math.floor(tenths / 36000);
  const m = Math.floor((tenths % 36000) / 600);
  const sec = ((tenths % 600) / 10).toFixed(1).padStart(4, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

// The score bar: cosine similarity in [-1, 1] drawn from a zero line in the middle, to the right for
// a positive score and to the left (another colour) for a negative one, so every score shows.
function scoreBar(score) {
  const bar = el("span", "bar");
  const fill = el("span", score < 0 ? "fill negative" : "fill");
  const half = Math.min(1, Math.abs(score)) * 50;
  fill.style.width = `${half}%`;
  fill.style.left = score < 0 ? `${50 - half}%` : "50%";
  bar.append(fill, el("span", "zero"));
  return bar;
}

function span(m) {
  return m.start === null ? "whole video" : `${clock(m.start)} – ${clock(m.end)}`;
}

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function errorText(body, status) {
  const detail = body && body.detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).slice(-1)[0] || "request"}: ${d.msg}`).join("; ");
  }
  return typeof detail === "string" ? detail : `the server answered ${status}`;
}

function thumbUrl(m) {
  const params = new URLSearchParams();
  if (m.start !== null) params.set("start", m.start);
  if (m.end !== null) params.set("end", m.end);
  const qs = params.toString();
  return `/api/thumbnail/${encodeURIComponent(m.video_id)}${qs ? "?" + qs : ""}`;
}

function videoUrl(m) {
  return `/api/video/${encodeURIComponent(m.video_id)}`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function card(m, i) {
  const li = el("li");
  const b = el("button", "card");
  b.type = "button";
  b.dataset.index = String(i);
  b.dataset.videoId = m.video_id;
  b.dataset.start = m.start === null ? "" : String(m.start);
  b.setAttribute("aria-label", `Play ${m.video_id}, ${span(m)}, score ${m.score.toFixed(3)}`);

  const frame = el("span", "thumb");
  const img = el("img");
  img.alt = "";
  img.decoding = "async";
  img.src = thumbUrl(m);
  img.addEventListener("error", () => frame.classList.add("missing"));
  frame.append(img, el("span", "rank", `#${m.rank}`), el("span", "time", span(m)));

  const info = el("span", "info");
  info.append(el("span", "name", m.video_id));
  const meta = el("span", "meta");
  meta.append(scoreBar(m.score), el("span", "score", `score ${m.score.toFixed(3)}`));
  meta.title = "cosine similarity of the query and the moment (-1 to 1; the bar starts at 0 in the middle)";
  info.append(meta);

  b.append(frame, info);
  b.addEventListener("click", () => play(i));
  li.append(b);
  return li;
}

function render(hits) {
  results = hits;
  playing = -1;
  const list = $("results");
  list.replaceChildren(...hits.map(card));
}

async function search(q, k, group) {
  const params = new URLSearchParams({ q, k, group });
  const mine = ++latest;
  setStatus("Searching…");
  $("go").disabled = true;
  const t0 = performance.now();
  try {
    const r = await fetch(`/api/search?${params}`);
    const body = await r.json().catch(() => null);
    if (mine !== latest) return;
    if (!r.ok) {
      setStatus(errorText(body, r.status), true);
      return;
    }
    const hits = body[0].results;
    render(hits);
    const ms = Math.round(performance.now() - t0);
    const what = group === "video" ? (hits.length === 1 ? "video" : "videos") : (hits.length === 1 ? "moment" : "moments");
    setStatus(hits.length ? `${hits.length} ${what} for “${q}” (${ms} ms)` : `Nothing found for “${q}”.`);
    history.replaceState(null, "", `?${params}`);
  } catch (err) {
    if (mine === latest) setStatus(`Search failed: ${err.message || err}`, true);
  } finally {
    if (mine === latest) $("go").disabled = false;
  }
}

function play(i) {
  const m = results[i];
  if (!m) return;
  const video = $("video");
  const start = m.start === null ? 0 : m.start;
  playing = i;
  document.querySelectorAll(".card.playing").forEach((c) => {
    c.classList.remove("playing");
    c.removeAttribute("aria-current");
  });
  const c = cards()[i];
  if (c) {
    c.classList.add("playing");
    c.setAttribute("aria-current", "true");
  }
  $("now-title").textContent = m.video_id;
  $("now-span").textContent = `${span(m)} · score ${m.score.toFixed(3)}`;
  $("player").hidden = false;
  $("layout").classList.add("with-player");
  if (video.dataset.videoId !== m.video_id) {
    video.dataset.videoId = m.video_id;
    pendingStart = start;
    video.src = videoUrl(m);
    video.load();
  } else if (video.readyState >= 1) {
    seek(start);
  } else {
    pendingStart = start;
  }
}

function seek(t) {
  const video = $("video");
  video.currentTime = t;
  const p = video.play();
  if (p && p.catch) p.catch(() => {});  // autoplay refused: the video waits at the moment's start
}

function stop() {
  const video = $("video");
  video.pause();
  $("player").hidden = true;
  $("layout").classList.remove("with-player");
  const c = cards()[playing];
  if (c) c.focus();
}

function cards() {
  return Array.from(document.querySelectorAll("#results .card"));
}

function columns(list) {
  if (list.length < 2) return 1;
  const top = list[0].getBoundingClientRect().top;
  const n = list.findIndex((c) => c.getBoundingClientRect().top > top + 1);
  return n === -1 ? list.length : n;
}

function onResultsKey(ev) {
  const list = cards();
  const i = list.indexOf(document.activeElement);
  if (i === -1) return;
  const cols = columns(list);
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols };
  let j = null;
  if (ev.key in moves) j = i + moves[ev.key];
  else if (ev.key === "Home") j = 0;
  else if (ev.key === "End") j = list.length - 1;
  if (j === null) return;
  ev.preventDefault();
  if (ev.key === "ArrowUp" && j < 0) { $("q").focus(); return; }
  list[Math.max(0, Math.min(list.length - 1, j))].focus();
}

function describeIndex(h) {
  const what = h.moments ? `${h.rows} moments of ${h.videos} videos` : `${h.videos} videos`;
  return `${what}${h.model ? " · " + h.model : ""} · ${h.device}`;
}

document.addEventListener("DOMContentLoaded", () => {
  const video = $("video");
  video.addEventListener("loadedmetadata", () => {
    if (pendingStart !== null) {
      const t = pendingStart;
      pendingStart = null;
      seek(t);
    }
  });
  video.addEventListener("error", () => {
    if (video.dataset.videoId) setStatus(`Cannot play ${video.dataset.videoId}: the file is missing or in a format this browser does not play.`, true);
  });
  $("replay").addEventListener("click", () => { if (playing >= 0) play(playing); });
  $("search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("q").value;
    if (!q.trim()) {
      latest++;  // an answer still on its way is no longer wanted
      $("go").disabled = false;
      setStatus("Type what you are looking for.", true);
      return;
    }
    search(q, $("k").value, $("group").value);
  });
  $("results").addEventListener("keydown", onResultsKey);
  $("q").addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown" && cards().length) { ev.preventDefault(); cards()[0].focus(); }
  });
  document.addEventListener("keydown", (ev) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (ev.key === "/" && !typing) { ev.preventDefault(); $("q").focus(); $("q").select(); }
    else if (ev.key === "Escape" && !$("player").hidden) { ev.preventDefault(); stop(); }
  });

  fetch("/api/health").then((r) => r.json()).then((h) => { $("about").textContent = describeIndex(h); })
    .catch(() => { $("about").textContent = "index information unavailable"; });

  const given = new URLSearchParams(location.search);
  if (given.get("q")) {
    $("q").value = given.get("q");
    const k = given.get("k");
    if (k && /^[0-9]+$/.test(k)) {
      if (![...$("k").options].some((o) => o.value === k)) $("k").append(new Option(k, k));
      $("k").value = k;
    }
    if (given.get("group")) $("group").value = given.get("group");
    search($("q").value, $("k").value, $("group").value);
  }
});
