"""The live view's page (apps/live_view.py): plain HTML, CSS and JavaScript that any current
browser runs as it is. The picture is an MJPEG `<img>`; the lists and the status line follow
the view's Server-Sent Events. Every text from a result is set as text, never as markup."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>facestream live</title>
<style>
body { font-family: sans-serif; margin: 1em 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .3em; }
h2 { font-size: 1em; margin: 1em 0 .3em; }
#status { font-family: monospace; background: #f3f3f3; padding: .4em .6em; }
#ended { background: #245; color: #fff; padding: .5em .8em; font-weight: bold; }
#warning { background: #c00; color: #fff; padding: .4em .8em; font-weight: bold; }
.main { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
#picture { max-width: min(100%, 800px); border: 1px solid #ccc; background: #eee;
  min-width: 320px; min-height: 240px; }
table { border-collapse: collapse; font-size: .9em; }
td, th { padding: .15em .6em; text-align: left; border-bottom: 1px solid #e4e4e4; }
.carried { color: #777; }
.empty { color: #999; font-style: italic; }
</style></head><body>
<h1>facestream live: <span id="source"></span></h1>
<p id="status">waiting for the first answered frame</p>
<p id="warning" hidden></p>
<p id="ended" hidden></p>
<div class="main">
<img id="picture" alt="the newest answered frame, with its faces boxed">
<aside>
<h2>Open tracks</h2>
<table id="open-tracks"><thead><tr><th>track</th><th>first seen</th><th>frames</th>
<th>analysed</th><th>last frame</th><th>attributes</th></tr></thead><tbody></tbody></table>
<h2>Ended tracks</h2>
<table id="ended-tracks"><thead><tr><th>track</th><th>from</th><th>to</th><th>frames</th>
<th>analysed</th><th>attributes (mean)</th><th>ended by</th></tr></thead><tbody></tbody>
</table>
</aside>
</div>
<script>
"use strict";
const seconds = (ms) => (ms / 1000).toFixed(1) + " s";

function fill(table, rows, columns) {
  const body = document.querySelector(table + " tbody");
  const lines = rows.map((row) => {
    const line = document.createElement("tr");
    line.dataset.track = row.track_id;
    if (row.analysed_last === false) line.className = "carried";
    for (const value of columns(row)) {
      const cell = document.createElement("td");
      cell.textContent = value;
      line.append(cell);
    }
    return line;
  });
  if (lines.length === 0) {
    const line = document.createElement("tr");
    const cell = document.createElement("td");
    cell.colSpan = 7;
    cell.className = "empty";
    cell.textContent = "none";
    line.append(cell);
    lines.push(line);
  }
  body.replaceChildren(...lines);
}

function show(state) {
  document.getElementById("source").textContent = state.source;
  const picture = document.getElementById("picture");
  // The picture's stream never ends: asked for once there is a frame, so that the page
  // itself has loaded by then.
  if (state.picture >= 0 && !picture.src) picture.src = "video.mjpeg";
  const frame = state.frame;
  const shown = frame.sequence === undefined ? "none yet"
    : `#${frame.sequence} at ${seconds(frame.position_ms)}, ${frame.status}, ` +
      `${frame.faces} face(s)`;
  document.getElementById("status").textContent =
    `${state.mode} | sent ${state.sent} | answered ${state.answered} | ` +
    `dropped ${state.dropped} | refused ${state.refused} | capture to result ` +
    `p50 ${state.p50.toFixed(2)} s, p99 ${state.p99.toFixed(2)} s | frame ${shown}`;
  const status = document.getElementById("status");
  status.dataset.faces = frame.faces ?? 0;
  status.dataset.frame = frame.sequence ?? -1;
  status.dataset.picture = state.picture;
  fill("#open-tracks", state.open_tracks, (t) => [
    t.track_id, seconds(t.first_position_ms), t.frames_seen, t.frames_analysed,
    t.analysed_last ? "analysed" : "carried", t.label,
  ]);
  fill("#ended-tracks", state.ended_tracks, (t) => [
    t.track_id, seconds(t.first_position_ms), seconds(t.last_position_ms), t.frames_seen,
    t.frames_analysed, t.label, t.ended_by,
  ]);
  const warning = document.getElementById("warning");
  warning.textContent = state.warning;
  warning.hidden = !state.warning;
  const ended = document.getElementById("ended");
  if (state.finished) {
    ended.textContent = "The stream has ended: " + state.finished;
    ended.hidden = false;
  }
}

const events = new EventSource("events");
events.onmessage = (message) => {
  const state = JSON.parse(message.data);
  show(state);
  if (state.finished) events.close();
};
const LOST = " | (reconnecting to the view...)";
events.onerror = () => {
  const status = document.getElementById("status");
  if (document.getElementById("ended").hidden && !status.textContent.endsWith(LOST)) {
    status.textContent += LOST;
  }
};
</script>
</body></html>
"""
