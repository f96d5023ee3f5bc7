// The mood journal page: record or upload a short face clip, keep it as an entry, see the mood over time.
// Plain ES module, no build step, nothing from outside the app (the page runs under a strict CSP:
// no inline scripts or styles, so every style set here goes through element.style or classes).

const SVG_NS = 'http://www.w3.org/2000/svg';
const COUNTDOWN_S = 3;
const RECORD_MS = 4000;
const DAY_MS = 86400000;

// Calm colours for the usual emotion names; any other class gets one from FALLBACK by its position.
const NAMED_COLOURS = {
  happy: '#e3a72f',
  happiness: '#e3a72f',
  sad: '#4f7cb8',
  sadness: '#4f7cb8',
  angry: '#c9534f',
  anger: '#c9534f',
  fear: '#8668b5',
  fearful: '#8668b5',
  surprise: '#e07a3f',
  surprised: '#e07a3f',
  disgust: '#5f9a4a',
  disgusted: '#5f9a4a',
  neutral: '#97a0a8',
  calm: '#6fb3b8',
  contempt: '#b06f93',
};
const FALLBACK = ['#2f8f8b', '#b5739d', '#7d8b3a', '#c28b5a', '#5a6fb0', '#a0525a', '#4d9a6f', '#8a7a5c'];

const state = {
  classes: [],
  colours: new Map(),
  entries: [],
  open: new Set(), // ids of history entries shown opened
  pending: null, // {blob, filename, url, source}
  stream: null,
  recording: false,
  saving: false,
  drafts: new Map(), // entry id -> a note edited in History and not saved yet (kept when the list is redrawn)
  maxNote: 2000, // characters; the server's limit replaces it at start (/api/health)
  weeksBack: 0, // the calendar shows five weeks ending this many weeks before the current one
  historyShown: 0, // how many of the newest entries History lists (set at start; "Show older" adds more)
};
const HISTORY_PAGE = 50; // entries History adds at a time: a year of daily entries is one long page otherwise

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- DOM helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) if (child != null && child !== false) node.append(child);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) if (child != null && child !== false) node.append(child);
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === 'class') node.setAttribute('class', value);
    else if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'colour') node.style.setProperty('--c', value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
}

function show(node, visible = true) {
  node.hidden = !visible;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- classes and colours

function setClasses(classes) {
  state.classes = [...classes];
  state.colours = new Map();
  state.classes.forEach((name, i) => {
    state.colours.set(name, NAMED_COLOURS[String(name).toLowerCase()] || FALLBACK[i % FALLBACK.length]);
  });
}

// White or ink, whichever reads better on a class colour (WCAG contrast): white on yellow was 2.1:1.
function inkOn(hex) {
  const channel = (i) => {
    const c = parseInt(hex.slice(1 + 2 * i, 3 + 2 * i), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  const lum = 0.2126 * channel(0) + 0.7152 * channel(1) + 0.0722 * channel(2);
  const INK = 0.0237; // --ink, #2d2a26
  return (1.05 / (lum + 0.05)) >= ((lum + 0.05) / (INK + 0.05)) ? '#ffffff' : '#2d2a26';
}

function colourOf(name) {
  if (!state.colours.has(name)) {
    // A class this model does not know (an entry made with another model): still one fixed colour.
    const known = NAMED_COLOURS[String(name).toLowerCase()];
    state.colours.set(name, known || FALLBACK[state.colours.size % FALLBACK.length]);
  }
  return state.colours.get(name);
}

// Every class of the model, then any other class an entry carries, in a stable order.
function classesOf(entry) {
  const names = [...state.classes];
  for (const name of Object.keys(entry?.probabilities || {})) if (!names.includes(name)) names.push(name);
  return names;
}

function pct(p, digits = 0) {
  return `${(100 * (Number(p) || 0)).toFixed(digits)}%`;
}

// ---------------------------------------------------------------- dates (the browser's local time)

const fmtTime = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fmtDay = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
const fmtDayYear = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' });
const fmtShort = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
const fmtFull = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short' });
const fmtMonth = new Intl.DateTimeFormat(undefined, { month: 'short' });
const fmtWeekday = new Intl.DateTimeFormat(undefined, { weekday: 'short' });

function entryDate(entry) {
  const d = new Date(entry.created_at);
  return Number.isNaN(d.getTime()) ? new Date(`${entry.day}T12:00:00`) : d;
}

function dayKey(date) {
  const y = date.getFullYear();
  const m = String(date.getMonth() + 1).padStart(2, '0');
  const d = String(date.getDate()).padStart(2, '0');
  return `${y}-${m}-${d}`;
}

function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate());
}

function addDays(date, n) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate() + n);
}

function dayHeading(date) {
  const today = startOfDay(new Date());
  const diff = Math.round((startOfDay(date) - today) / DAY_MS);
  const name = date.getFullYear() === today.getFullYear() ? fmtDay.format(date) : fmtDayYear.format(date);
  if (diff === 0) return `Today · ${name}`;
  if (diff === -1) return `Yesterday · ${name}`;
  return name;
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { credentials: 'same-origin', ...options });
  } catch {
    throw new ApiError('cannot reach the journal server: is it still running?', 0);
  }
  if (response.ok) {
    const type = response.headers.get('content-type') || '';
    return type.includes('json') ? response.json() : response;
  }
  if (response.status === 503) {
    const after = parseInt(response.headers.get('Retry-After') || '', 10);
    throw new ApiError(`the server is busy, try again in ${Number.isFinite(after) ? after : 'a few'} s`, 503);
  }
  let message = '';
  try {
    const body = await response.json();
    message = body.error || body.detail || '';
    if (Array.isArray(message)) message = message.map((d) => d.msg || JSON.stringify(d)).join('; ');
    else if (typeof message !== 'string') message = JSON.stringify(message);
  } catch {
    // not JSON: fall back to the status line
  }
  if (!message) message = `the server answered ${response.status} ${response.statusText}`.trim();
  throw new ApiError(message, response.status);
}

const entryUrl = (id) => `/api/entries/${encodeURIComponent(id)}`;

// ---------------------------------------------------------------- messages

function showError(message) {
  $('error-message').textContent = message;
  show($('error'));
}

function clearError() {
  $('error-message').textContent = '';
  show($('error'), false);
}

// Where keyboard focus goes when the control that had it is disabled or gone: the next thing to do.
function focusNextStep() {
  const next = ['save', 'record', 'retake', 'camera'].map($).find((b) => b && !b.hidden && !b.disabled);
  next?.focus();
}

// A note pasted past the limit was cut by maxlength without a word.
function limitText(box) {
  return box.value.length >= box.maxLength && box.maxLength > 0
    ? `A note holds at most ${box.maxLength.toLocaleString('en')} characters; the rest was not kept.` : '';
}

function focusLost() {
  const active = document.activeElement;
  return !active || active === document.body || active.disabled || active.hidden;
}

function setStatus(text) {
  $('status').textContent = text || '';
  $('history-status').textContent = ''; // news of a deletion is stale once something else happens
}

// ---------------------------------------------------------------- camera and recording

function pickMimeType() {
  if (typeof MediaRecorder === 'undefined') return null;
  const candidates = [
    'video/webm;codecs=vp9', 'video/webm;codecs=vp8', 'video/webm',
    'video/mp4;codecs=avc1', 'video/mp4',
  ];
  for (const type of candidates) if (MediaRecorder.isTypeSupported(type)) return type;
  return '';
}

function cameraMessage(error) {
  switch (error?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'the camera was not allowed: allow it for this page in the browser, or upload a clip instead';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'no camera was found: connect one, or upload a clip instead';
    case 'NotReadableError':
      return 'the camera is in use by another program: close it, or upload a clip instead';
    default:
      return `the camera could not start (${error?.message || error}): upload a clip instead`;
  }
}

async function startCamera() {
  if (state.stream) return state.stream;
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error('this page cannot use the camera here (it needs http://127.0.0.1, localhost or https): upload a clip instead');
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: 'user', width: { ideal: 640 }, height: { ideal: 480 } },
      audio: false,
    });
  } catch (error) {
    throw new Error(cameraMessage(error));
  }
  state.stream = stream;
  const preview = $('preview');
  preview.srcObject = stream;
  await preview.play().catch(() => {});
  $('camera').textContent = 'Turn off camera';
  updateStage();
  return stream;
}

function stopCamera() {
  if (state.stream) for (const track of state.stream.getTracks()) track.stop();
  state.stream = null;
  $('preview').srcObject = null;
  $('camera').textContent = 'Turn on camera';
  updateStage();
}

async function countdown() {
  const box = $('countdown');
  show(box);
  for (let n = COUNTDOWN_S; n > 0; n -= 1) {
    box.textContent = String(n);
    box.classList.remove('tick');
    void box.offsetWidth; // restart the animation
    box.classList.add('tick');
    await sleep(1000);
  }
  show(box, false);
  box.textContent = '';
}

async function recordClip(stream) {
  const mimeType = pickMimeType();
  if (mimeType === null) throw new Error('this browser cannot record video: upload a clip instead');
  const recorder = new MediaRecorder(stream, mimeType ? { mimeType, videoBitsPerSecond: 2500000 } : {});
  const chunks = [];
  recorder.addEventListener('dataavailable', (event) => {
    if (event.data && event.data.size) chunks.push(event.data);
  });
  const stopped = new Promise((resolve, reject) => {
    recorder.addEventListener('stop', resolve);
    recorder.addEventListener('error', (event) => reject(event.error || new Error('recording failed')));
  });
  const indicator = $('rec-indicator');
  const bar = $('rec-progress-bar');
  show(indicator);
  show($('rec-progress'));
  recorder.start(250);
  const started = performance.now();
  const ticker = setInterval(() => {
    const done = Math.min(1, (performance.now() - started) / RECORD_MS);
    bar.style.width = `${(100 * done).toFixed(1)}%`;
    $('rec-left').textContent = `${Math.max(0, (RECORD_MS - (performance.now() - started)) / 1000).toFixed(1)} s`;
  }, 100);
  try {
    await sleep(RECORD_MS);
    recorder.stop();
    await stopped;
  } finally {
    clearInterval(ticker);
    show(indicator, false);
    show($('rec-progress'), false);
    bar.style.width = '0%';
  }
  const type = (recorder.mimeType || mimeType || 'video/webm').split(';')[0];
  const blob = new Blob(chunks, { type });
  if (!blob.size) throw new Error('the recording came out empty: try again, or upload a clip instead');
  return blob;
}

async function onRecord() {
  if (state.recording || state.saving) return;
  clearError();
  state.recording = true;
  updateControls();
  try {
    setStatus('Starting the camera');
    const stream = await startCamera();
    clearPending();
    setStatus('Look at the camera');
    await countdown();
    setStatus('Recording');
    const blob = await recordClip(stream);
    stopCamera(); // the camera light goes off as soon as the clip is taken
    const extension = blob.type.includes('mp4') ? 'mp4' : 'webm';
    setPending(blob, `clip.${extension}`, 'recorded');
    setStatus('Here is your clip. Save it, or retake it.');
  } catch (error) {
    show($('countdown'), false);
    setStatus('');
    showError(error.message || String(error));
  } finally {
    state.recording = false;
    updateControls();
    // Record was disabled, then hidden for Retake: focus fell to the page. The message, or the next step.
    if (focusLost()) {
      if (!$('error').hidden) $('error').focus();
      else focusNextStep();
    }
  }
}

function onUpload(event) {
  const file = event.target.files?.[0];
  event.target.value = ''; // the same file can be chosen again
  if (!file) return;
  clearError();
  stopCamera(); // the clip is the file now: the camera (and its light) goes off, as after a recording
  setPending(file, file.name || 'clip', 'uploaded');
  setStatus(`${file.name}: save it to classify it.`);
}

function setPending(blob, filename, source) {
  clearPending();
  const url = URL.createObjectURL(blob);
  state.pending = { blob, filename, url, source };
  hideResult(); // "this clip" is now the new one
  const playback = $('playback');
  playback.src = url;
  playback.play().catch(() => {});
  updateStage();
  updateControls();
}

function clearPending() {
  if (state.pending) URL.revokeObjectURL(state.pending.url);
  state.pending = null;
  const playback = $('playback');
  playback.removeAttribute('src');
  playback.load();
  updateStage();
  updateControls();
}

function updateStage() {
  const hasClip = Boolean(state.pending);
  show($('playback'), hasClip);
  show($('preview'), !hasClip && Boolean(state.stream));
  show($('stage-placeholder'), !hasClip && !state.stream);
  $('stage').classList.toggle('live', !hasClip && Boolean(state.stream));
}

function updateControls() {
  const busy = state.recording || state.saving;
  $('record').disabled = busy;
  $('camera').disabled = busy;
  $('upload').disabled = busy;
  $('save').disabled = busy || !state.pending || Boolean(state.pending.refused);
  const recorded = state.pending?.source === 'recorded';
  show($('retake'), recorded);
  show($('record'), !recorded);
  $('retake').disabled = busy;
  $('record').classList.toggle('primary', !state.pending);
  $('record').textContent = state.pending ? 'Record instead' : 'Record 4 s';
  $('new-entry').classList.toggle('busy', busy);
}

async function onSave() {
  if (!state.pending || state.saving) return;
  clearError();
  state.saving = true;
  updateControls();
  setStatus('Reading your face');
  const form = new FormData();
  form.append('clip', state.pending.blob, state.pending.filename);
  const note = $('note').value.trim();
  if (note) form.append('note', note);
  let entry;
  try {
    entry = await api('/api/entries', { method: 'POST', body: form });
  } catch (error) {
    setStatus('Nothing was saved.');
    showError(error.message || String(error));
    // The clip itself was refused (no face, not a video, too large, empty): saving it again would say the same.
    const refused = [413, 415, 422].includes(error.status)
      || (error.status === 400 && String(error.message).startsWith('the clip is empty'));
    if (refused && state.pending) state.pending.refused = true;
    return;
  } finally {
    state.saving = false;
    updateControls();
    // Save (which had focus) may be disabled now: keyboard users land on the message, not the page top.
    if (!$('error').hidden && focusLost()) $('error').focus();
  }
  clearPending();
  $('note').value = '';
  setStatus(`Saved: ${entry.label}.`);
  showResult(entry);
  $('result-title').focus(); // keyboard users land on what they just saved, not at the top of the page
  try {
    await loadEntries();
  } catch (error) {
    showError(`the entry was saved, but the history could not be reloaded: ${error.message || error}`);
  }
}

// ---------------------------------------------------------------- one entry: bars, timeline, clip

function labelChip(name, extra = {}) {
  return el('span', { class: 'chip', colour: colourOf(name), ...extra }, el('span', { class: 'dot' }), el('span', { text: name }));
}

function barsView(probabilities, names, top) {
  const list = el('ul', { class: 'bars', 'data-testid': 'bars' });
  for (const name of names) {
    const p = Number(probabilities?.[name] ?? 0);
    const fill = el('span', { class: 'bar-fill', colour: colourOf(name) });
    fill.style.width = `${Math.max(0, Math.min(100, 100 * p)).toFixed(1)}%`;
    list.append(el('li', { class: name === top ? 'bar is-top' : 'bar', dataset: { class: name } },
      el('span', { class: 'bar-name', text: name }),
      el('span', { class: 'bar-track' }, fill),
      el('span', { class: 'bar-value', text: pct(p) })));
  }
  return list;
}

// One line per class over the clip: each window's probabilities drawn at the window's middle, with the
// window's span as a faint strip in its label's colour below. A playhead follows the clip as it plays.
function timelineView(entry, names, video) {
  const windows = (entry.windows || []).filter((w) => Number.isFinite(Number(w.start_s)));
  const wrap = el('figure', { class: 'timeline', 'data-testid': 'timeline' });
  if (!windows.length) {
    wrap.append(el('p', { class: 'muted small', text: 'No timeline for this clip.' }));
    return wrap;
  }
  const W = 420;
  const H = 190;
  const pad = { left: 50, right: 10, top: 10, bottom: 38 };
  const plotW = W - pad.left - pad.right;
  const plotH = H - pad.top - pad.bottom;
  const end = Math.max(Number(entry.seconds) || 0, ...windows.map((w) => Number(w.end_s) || 0), 0.1);
  const x = (s) => pad.left + (plotW * s) / end;
  const y = (p) => pad.top + plotH * (1 - p);
  const chart = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'timeline-svg', role: 'img',
    'aria-label': `How each emotion moved over the ${end.toFixed(1)} s clip`,
  });
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    chart.append(svg('line', { x1: pad.left, x2: W - pad.right, y1: y(p), y2: y(p), class: p === 0 ? 'axis' : 'grid' }));
    if (p % 0.5 === 0) chart.append(svg('text', { x: pad.left - 6, y: y(p) + 4, class: 'tick', 'text-anchor': 'end', text: `${p * 100}%` }));
  }
  // at most 8 labels, whatever the clip's length (a 60 s clip had 31 labels run into one another)
  const step = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600].find((t) => Math.floor(end / t) + 1 <= 8)
    ?? Math.ceil(end / 7);
  for (let s = 0; s <= end + 1e-6; s += step) {
    chart.append(svg('line', { x1: x(s), x2: x(s), y1: y(0), y2: y(0) + 4, class: 'axis' }));
    chart.append(svg('text', { x: x(s), y: y(0) + 16, class: 'tick', 'text-anchor': 'middle', text: `${Number(s.toFixed(1))} s` }));
  }
  // the windows' spans, coloured by their label
  const stripY = H - 12;
  chart.append(svg('text', { x: pad.left - 6, y: stripY + 7, class: 'tick', 'text-anchor': 'end', text: 'windows' }));
  windows.forEach((w, i) => {
    const rect = svg('rect', {
      x: x(Number(w.start_s)), y: stripY + (i % 2) * 4, width: Math.max(1, x(Number(w.end_s)) - x(Number(w.start_s))), height: 4,
      fill: colourOf(w.label), class: 'window-span',
    });
    rect.append(svg('title', { text: `${Number(w.start_s).toFixed(1)}–${Number(w.end_s).toFixed(1)} s: ${w.label} (face in ${pct(w.face_ratio)} of frames)` }));
    chart.append(rect);
  });
  const mid = (w) => (Number(w.start_s) + Number(w.end_s)) / 2;
  const top = entry.label;
  // the top class last, so it is drawn over the others
  const order = [...names.filter((n) => n !== top), ...names.filter((n) => n === top)];
  for (const name of order) {
    const colour = colourOf(name);
    const cls = name === top ? 'series is-top' : 'series';
    const points = windows.map((w) => [w, w.probabilities?.[name]]).filter(([, p]) => p != null);
    if (!points.length) continue;
    const group = svg('g', { class: cls, dataset: { class: name } });
    // each value at its window's middle, held flat out to the first window's start and the last one's end
    const coords = points.map(([w, p]) => [x(mid(w)), y(Number(p))]);
    coords.unshift([x(Number(points[0][0].start_s)), coords[0][1]]);
    coords.push([x(Number(points[points.length - 1][0].end_s)), coords[coords.length - 1][1]]);
    const d = coords.map(([cx, cy], i) => `${i ? 'L' : 'M'}${cx.toFixed(1)},${cy.toFixed(1)}`).join(' ');
    group.append(svg('path', { d, stroke: colour, fill: 'none' }));
    for (const [w, p] of points) {
      const dot = svg('circle', { cx: x(mid(w)), cy: y(Number(p)), r: name === top ? 3 : 2, fill: colour });
      dot.append(svg('title', { text: `${name} ${pct(p)} at ${Number(w.start_s).toFixed(1)}–${Number(w.end_s).toFixed(1)} s` }));
      group.append(dot);
    }
    chart.append(group);
  }
  const playhead = svg('line', { x1: x(0), x2: x(0), y1: pad.top, y2: y(0), class: 'playhead' });
  chart.append(playhead);
  if (video) {
    let frame = 0;
    const move = () => {
      const t = Math.min(end, Math.max(0, video.currentTime || 0));
      playhead.setAttribute('x1', x(t));
      playhead.setAttribute('x2', x(t));
      if (!video.paused && !video.ended) frame = requestAnimationFrame(move);
    };
    video.addEventListener('play', () => { cancelAnimationFrame(frame); frame = requestAnimationFrame(move); });
    video.addEventListener('seeked', move);
    video.addEventListener('timeupdate', move);
  }
  const legend = el('figcaption', { class: 'legend compact' },
    names.map((name) => el('span', { class: name === top ? 'legend-item is-top' : 'legend-item', colour: colourOf(name) },
      el('span', { class: 'swatch' }), name)));
  wrap.append(chart, legend);
  return wrap;
}

function entryView(entry, { clipUrl, autoplay = false } = {}) {
  const names = classesOf(entry);
  const video = el('video', {
    class: 'entry-clip', controls: true, muted: true, loop: true, playsinline: true, preload: 'metadata',
    'data-testid': 'entry-clip',
  });
  video.muted = true;
  if (clipUrl) video.src = clipUrl;
  if (autoplay) {
    video.autoplay = true;
    video.play().catch(() => {});
  }
  const cannotPlay = 'This browser cannot play this clip; it is kept as it was sent.';
  // Some formats (HEVC in Chromium) load without an error and show a black box: no picture is no picture.
  video.addEventListener('loadeddata', () => {
    if (video.videoWidth === 0 && !video.nextElementSibling?.classList.contains('clip-note')) {
      video.after(el('p', { class: 'clip-note muted small', text: cannotPlay }));
    }
  });
  video.addEventListener('error', async () => {
    if (video.nextElementSibling?.classList.contains('clip-note')) return;
    const note = el('p', { class: 'clip-note muted small', text: 'Loading the clip failed…' });
    video.after(note);
    // A failed fetch and a format the browser cannot play give the same media error: ask the server.
    let text = cannotPlay;
    if (clipUrl) {
      try {
        const response = await fetch(clipUrl, { headers: { Range: 'bytes=0-0' }, credentials: 'same-origin' });
        if (!response.ok) {
          const body = await response.json().catch(() => null);
          text = `The clip could not be fetched: ${body?.error || `the server answered ${response.status}`}.`;
        } else {
          response.body?.cancel().catch(() => {}); // a server that ignores Range sends it all
        }
      } catch {
        text = 'Cannot reach the journal server to fetch the clip: is it still running? Reload the page once it is.';
      }
    }
    note.textContent = text;
  });
  const face = Number(entry.face_ratio) || 0;
  const faceMeter = el('span', { class: 'meter-fill' });
  faceMeter.style.width = `${(100 * Math.min(1, face)).toFixed(1)}%`;
  const confidence = entry.probabilities?.[entry.label];
  return el('div', { class: 'entry-view', dataset: { label: entry.label } },
    el('div', { class: 'ev-media' }, video),
    el('div', { class: 'ev-info' },
      el('div', { class: 'ev-head' },
        labelChip(entry.label, { class: 'chip big', 'data-testid': 'label' }),
        confidence != null ? el('span', { class: 'confidence', text: `${pct(confidence)} sure` }) : null),
      el('p', { class: 'face', 'data-testid': 'face-ratio' },
        el('span', { class: 'meter' }, faceMeter),
        el('span', { text: `A face in ${pct(face)} of the sampled frames${entry.seconds ? ` · ${Number(entry.seconds).toFixed(1)} s clip` : ''}` })),
      barsView(entry.probabilities, names, entry.label)),
    el('div', { class: 'ev-timeline' },
      el('h3', { text: 'Over the clip' }),
      timelineView(entry, names, video)));
}

function hideResult() {
  show($('result'), false);
  $('result-body').replaceChildren();
  delete $('result').dataset.entryId;
}

function resultWhen(entry) {
  return `Saved ${fmtFull.format(entryDate(entry))}${entry.note ? ` · “${entry.note}”` : ''}`;
}

function showResult(entry) {
  const body = $('result-body');
  body.replaceChildren();
  const view = entryView(entry, { clipUrl: `${entryUrl(entry.id)}/clip`, autoplay: true });
  view.id = 'result-view';
  const label = view.querySelector('[data-testid="label"]');
  label.id = 'result-label';
  const when = el('p', { id: 'result-when', class: 'muted small note-text', text: resultWhen(entry) });
  body.append(view, when);
  show($('result'));
  $('result').dataset.entryId = entry.id;
  $('result').scrollIntoView({ block: 'nearest', behavior: 'smooth' });
}

// ---------------------------------------------------------------- history

async function loadEntries() {
  const data = await api('/api/entries');
  state.entries = (data.entries || []).slice().sort((a, b) => entryDate(b) - entryDate(a));
  renderAll();
}

function renderAll() {
  renderHistory();
  renderCalendar();
  renderCounts();
  renderLegend();
}

function renderHistory() {
  const box = $('history');
  box.replaceChildren();
  const n = state.entries.length;
  $('history-count').textContent = n ? `· ${n} ${n === 1 ? 'entry' : 'entries'}` : '';
  show($('history-empty'), n === 0);
  state.historyShown = Math.max(state.historyShown, HISTORY_PAGE);
  const shown = state.entries.slice(0, state.historyShown);
  const more = $('history-more');
  const left = n - shown.length;
  more.textContent = `Show older entries (${left} more)`;
  show(more, left > 0);
  let currentDay = null;
  let list = null;
  for (const entry of shown) {
    const date = entryDate(entry);
    const key = dayKey(date);
    if (key !== currentDay) {
      currentDay = key;
      list = el('ol', { class: 'entries' });
      box.append(el('section', { class: 'day', id: `day-${key}`, dataset: { day: key } },
        el('h3', { class: 'day-title', tabindex: '-1', text: dayHeading(date) }), list));
    }
    list.append(historyItem(entry));
  }
}

function historyItem(entry) {
  const date = entryDate(entry);
  const confidence = entry.probabilities?.[entry.label];
  const detail = el('div', { class: 'entry-detail', hidden: true });
  const item = el('li', { class: 'entry', 'data-testid': 'entry', dataset: { id: entry.id, label: entry.label }, colour: colourOf(entry.label) });
  const notePreview = el('span', { class: 'entry-note', 'data-testid': 'entry-note', text: entry.note || '' });
  const head = el('button', {
    class: 'entry-head', type: 'button', 'aria-expanded': 'false', 'data-testid': 'entry-open',
    title: fmtFull.format(date),
  },
  // heard with its day: moving through the rows by Tab gave times with no date
  el('span', { class: 'visually-hidden', text: `${fmtDay.format(date)}, ` }),
  el('time', { datetime: entry.created_at, class: 'entry-time', text: fmtTime.format(date) }),
  labelChip(entry.label, { 'data-testid': 'entry-label' }),
  confidence != null ? el('span', { class: 'entry-conf muted', text: pct(confidence) }) : null,
  notePreview,
  el('span', { class: 'chevron', 'aria-hidden': 'true' }));
  head.addEventListener('click', () => toggleEntry(entry, item, head, detail));
  item.append(head, detail);
  if (state.open.has(String(entry.id))) toggleEntry(entry, item, head, detail, true);
  return item;
}

async function toggleEntry(entry, item, head, detail, forceOpen = false) {
  const opening = forceOpen || detail.hidden;
  head.setAttribute('aria-expanded', String(opening));
  item.classList.toggle('open', opening);
  if (!opening) {
    detail.hidden = true;
    detail.querySelectorAll('video').forEach((v) => v.pause());
    state.open.delete(String(entry.id));
    return;
  }
  state.open.add(String(entry.id));
  detail.hidden = false;
  if (detail.dataset.loaded) return;
  detail.dataset.loaded = '1';
  detail.replaceChildren(el('p', { class: 'muted small', text: 'Opening…' }));
  let full = entry;
  try {
    full = await api(entryUrl(entry.id));
  } catch (error) {
    if (error.status === 404) {
      showError('this entry is no longer there (deleted elsewhere?)');
      await loadEntries().catch(() => {});
      return;
    }
    // the list's copy is enough to show the entry
  }
  // the clip is only fetched now that the entry is opened
  detail.replaceChildren(entryView(full, { clipUrl: `${entryUrl(full.id)}/clip` }), entryActions(full, item));
}

function entryActions(entry, item) {
  const id = String(entry.id);
  const noteBox = el('textarea', { rows: 2, maxlength: state.maxNote, 'data-testid': 'note-edit', 'aria-label': 'Note' });
  noteBox.value = state.drafts.get(id) ?? (entry.note || '');
  const noteStatus = el('span', { class: 'muted small', 'aria-live': 'polite', 'data-testid': 'note-status' });
  if (state.drafts.has(id)) noteStatus.textContent = 'Not saved yet.';
  const saveNote = el('button', { type: 'button', 'data-testid': 'note-save', text: 'Save note' });
  noteBox.addEventListener('input', () => {
    noteStatus.textContent = limitText(noteBox); // "Note saved." was about the old text
    // kept while the history is redrawn (a new entry, a deletion), which rebuilds this box
    if (noteBox.value === (entry.note || '')) state.drafts.delete(id);
    else state.drafts.set(id, noteBox.value);
  });
  saveNote.addEventListener('click', async () => {
    clearError();
    saveNote.disabled = true;
    noteStatus.textContent = 'Saving…';
    try {
      const updated = await api(entryUrl(entry.id), {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ note: noteBox.value }),
      });
      Object.assign(entry, updated);
      const cached = state.entries.find((e) => String(e.id) === String(entry.id));
      if (cached) Object.assign(cached, updated);
      if (noteBox.value === (updated.note || '')) state.drafts.delete(id);
      item.querySelector('[data-testid="entry-note"]').textContent = updated.note || '';
      if ($('result').dataset.entryId === id) $('result-when').textContent = resultWhen(updated);
      noteStatus.textContent = 'Note saved.';
    } catch (error) {
      noteStatus.textContent = '';
      showError(error.message || String(error));
    } finally {
      saveNote.disabled = false;
    }
  });

  const confirmRow = el('div', { class: 'confirm', 'data-testid': 'confirm', hidden: true, role: 'group', 'aria-label': 'Confirm deletion' },
    el('span', { text: 'Delete this entry and its clip? This cannot be undone.' }));
  const confirmButton = el('button', { type: 'button', class: 'danger', 'data-testid': 'confirm-delete', text: 'Delete for good' });
  const cancelButton = el('button', { type: 'button', 'data-testid': 'cancel-delete', text: 'Keep it' });
  confirmRow.append(confirmButton, cancelButton);
  const deleteButton = el('button', { type: 'button', class: 'danger-outline', 'data-testid': 'delete', text: 'Delete…' });
  deleteButton.addEventListener('click', () => {
    confirmRow.hidden = false;
    deleteButton.hidden = true;
    cancelButton.focus();
  });
  const keep = () => {
    confirmRow.hidden = true;
    deleteButton.hidden = false;
    deleteButton.focus();
  };
  cancelButton.addEventListener('click', keep);
  confirmRow.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') keep();
  });
  confirmButton.addEventListener('click', async () => {
    clearError();
    $('history-status').textContent = ''; // emptied first, so that a second deletion is announced again
    confirmButton.disabled = true;
    try {
      await api(entryUrl(entry.id), { method: 'DELETE' });
      state.open.delete(id);
      state.drafts.delete(id);
      state.entries = state.entries.filter((e) => String(e.id) !== id);
      if ($('result').dataset.entryId === String(entry.id)) hideResult();
      renderAll();
      // said, and focused, where the deleting happened (the button that had focus is gone)
      $('history-status').textContent = 'The entry was deleted.';
      $('history-title').focus();
    } catch (error) {
      confirmButton.disabled = false;
      showError(error.message || String(error));
    }
  });

  return el('div', { class: 'entry-actions' },
    el('label', { class: 'note-label', text: 'Note' }),
    noteBox,
    el('div', { class: 'row' }, saveNote, noteStatus, el('span', { class: 'spacer' }), deleteButton),
    confirmRow);
}

// ---------------------------------------------------------------- mood calendar, counts, legend

function dominant(entries) {
  const counts = new Map();
  const weight = new Map();
  for (const e of entries) {
    counts.set(e.label, (counts.get(e.label) || 0) + 1);
    weight.set(e.label, (weight.get(e.label) || 0) + Number(e.probabilities?.[e.label] || 0));
  }
  let best = null;
  for (const [label, n] of counts) {
    if (!best || n > counts.get(best) || (n === counts.get(best) && weight.get(label) > weight.get(best))) best = label;
  }
  return { label: best, counts };
}

function renderCalendar() {
  const cal = $('calendar');
  cal.replaceChildren();
  const today = startOfDay(new Date());
  const weekday = (today.getDay() + 6) % 7; // Monday first
  const last = addDays(today, 6 - weekday - 7 * state.weeksBack);
  const first = addDays(last, -34); // five whole weeks
  const range = `${fmtShort.format(first)} – ${fmtShort.format(last)}`;
  $('calendar-range').textContent = range;
  $('mood-title').textContent = state.weeksBack ? `Mood, ${range}` : 'Mood over the last five weeks';
  $('cal-later').disabled = state.weeksBack === 0;
  const oldest = state.entries.length ? startOfDay(entryDate(state.entries[state.entries.length - 1])) : today;
  $('cal-earlier').disabled = first <= oldest;
  const byDay = new Map();
  for (const entry of state.entries) {
    const key = dayKey(entryDate(entry));
    if (!byDay.has(key)) byDay.set(key, []);
    byDay.get(key).push(entry);
  }
  // Seen as a grid; heard as the days that have entries, each a button that names its date and mood (the
  // weekday heads and empty days say nothing a day's own label does not).
  const headRow = el('div', { class: 'cal-row cal-head', 'aria-hidden': 'true' });
  for (let i = 0; i < 7; i += 1) {
    headRow.append(el('span', { class: 'cal-weekday', text: fmtWeekday.format(addDays(first, i)) }));
  }
  cal.append(headRow);
  let row = null;
  for (let i = 0; i < 35; i += 1) {
    if (i % 7 === 0) {
      row = el('div', { class: 'cal-row' });
      cal.append(row);
    }
    const day = addDays(first, i);
    const key = dayKey(day);
    const entries = byDay.get(key) || [];
    const classes = ['cal-day'];
    if (key === dayKey(today)) classes.push('today');
    if (day > today) classes.push('future');
    const number = el('span', { class: day.getDate() === 1 ? 'cal-num first' : 'cal-num', text: String(day.getDate()) },
      day.getDate() === 1 ? el('span', { class: 'cal-month', text: fmtMonth.format(day) }) : null);
    let cell;
    if (entries.length) {
      const { label, counts } = dominant(entries);
      classes.push('has');
      const summary = [...counts].sort((a, b) => b[1] - a[1]).map(([l, n]) => `${l} ×${n}`).join(', ');
      cell = el('button', {
        type: 'button', class: classes.join(' '), colour: colourOf(label),
        dataset: { day: key, label, index: String(i) }, 'data-testid': 'calendar-day', tabindex: '-1',
        title: `${fmtDay.format(day)}: ${summary}`, 'aria-label': `${fmtDay.format(day)}: mostly ${label} (${summary})`,
      }, number, entries.length > 1 ? el('span', { class: 'cal-count', text: String(entries.length) }) : null);
      cell.style.setProperty('--on', inkOn(colourOf(label)));
      cell.addEventListener('click', () => {
        if (!$(`day-${key}`)) { // an older day than History lists: list down to it
          state.historyShown = state.entries.findLastIndex((e) => dayKey(entryDate(e)) === key) + 1;
          renderHistory();
        }
        const heading = $(`day-${key}`)?.querySelector('.day-title');
        if (!heading) return;
        heading.scrollIntoView({ behavior: 'smooth', block: 'start' });
        heading.focus({ preventScroll: true }); // the next Tab goes into that day's entries, not the next day
      });
    } else {
      cell = el('span', { class: classes.join(' '), 'aria-hidden': 'true', dataset: { day: key }, title: fmtDay.format(day) }, number);
    }
    row.append(cell);
  }
  const days = cal.querySelectorAll('button.cal-day');
  if (days.length) days[days.length - 1].tabIndex = 0; // the newest day is where Tab comes in
}

// The calendar is one Tab stop (up to 35 days were one each): Tab comes in on the newest day with entries, or
// on the one last focused; the arrow keys move between the days with entries, left and right one at a time,
// up and down a week, and Home and End go to the first and the last.
function calendarKey(event) {
  const days = [...$('calendar').querySelectorAll('button.cal-day')];
  const at = days.indexOf(document.activeElement);
  if (at < 0) return;
  const index = (b) => Number(b.dataset.index);
  const here = index(days[at]);
  const target = {
    ArrowLeft: days[at - 1],
    ArrowRight: days[at + 1],
    ArrowUp: days.filter((b) => index(b) <= here - 7).pop(),
    ArrowDown: days.find((b) => index(b) >= here + 7),
    Home: days[0],
    End: days[days.length - 1],
  };
  if (!(event.key in target)) return;
  event.preventDefault(); // the page does not scroll under an arrow that has no day to go to
  target[event.key]?.focus();
}

function calendarFocus(event) {
  if (!event.target.matches('button.cal-day')) return;
  for (const b of $('calendar').querySelectorAll('button.cal-day')) b.tabIndex = b === event.target ? 0 : -1;
}

function renderCounts() {
  const body = $('counts-body');
  body.replaceChildren();
  const now = Date.now();
  const within = (days) => state.entries.filter((e) => now - entryDate(e).getTime() <= days * DAY_MS);
  const week = within(7);
  const month = within(30);
  const names = [...state.classes];
  for (const e of state.entries) if (!names.includes(e.label)) names.push(e.label);
  const max = Math.max(1, ...names.map((n) => month.filter((e) => e.label === n).length));
  for (const name of names) {
    const n7 = week.filter((e) => e.label === name).length;
    const n30 = month.filter((e) => e.label === name).length;
    const cell = (n, days) => {
      const fill = el('span', { class: 'mini-fill', colour: colourOf(name) });
      fill.style.width = `${((100 * n) / max).toFixed(1)}%`;
      return el('td', { class: n ? 'count' : 'count zero', 'data-testid': `count-${days}-${name}` },
        el('span', { class: 'mini' }, fill), el('span', { class: 'count-n', text: String(n) }));
    };
    body.append(el('tr', { dataset: { class: name } },
      el('th', { scope: 'row' }, labelChip(name)), cell(n7, 7), cell(n30, 30)));
  }
  body.append(el('tr', { class: 'total' }, el('th', { scope: 'row', text: 'All' }),
    el('td', { 'data-testid': 'count-7-total', text: String(week.length) }),
    el('td', { 'data-testid': 'count-30-total', text: String(month.length) })));
}

function renderLegend() {
  const legend = $('legend');
  legend.replaceChildren(...state.classes.map((name) => el('span', { class: 'legend-item', colour: colourOf(name) },
    el('span', { class: 'swatch' }), name)));
}

// ---------------------------------------------------------------- start

async function init() {
  $('calendar').addEventListener('keydown', calendarKey);
  $('calendar').addEventListener('focusin', calendarFocus);
  $('cal-earlier').addEventListener('click', () => {
    state.weeksBack += 5;
    renderCalendar();
    if ($('cal-earlier').disabled) $('cal-later').focus(); // back at the first entry's weeks
  });
  $('cal-later').addEventListener('click', () => {
    state.weeksBack = Math.max(0, state.weeksBack - 5);
    renderCalendar();
    if (state.weeksBack === 0) $('cal-earlier').focus(); // "Later" is disabled now
  });
  $('history-more').addEventListener('click', () => {
    const next = state.historyShown; // the first entry not listed yet gets the focus
    state.historyShown += HISTORY_PAGE;
    renderHistory();
    $('history').querySelectorAll('[data-testid=entry-open]')[next]?.focus();
  });
  $('error-close').addEventListener('click', () => {
    clearError();
    focusNextStep(); // the button that had focus is hidden with the message
  });
  // Leaving while a clip is being saved, with a clip or a note not saved yet, or with a History note edited
  // and not saved, asks first (a recorded clip and its note went on a reload without a word).
  window.addEventListener('beforeunload', (event) => {
    if (state.saving || state.drafts.size || state.pending || $('note').value.trim()) event.preventDefault();
  });
  // Escape on the message (or its Dismiss button) closes it, as Dismiss does.
  $('error').addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return;
    clearError();
    focusNextStep();
  });
  $('note').addEventListener('input', () => {
    $('note-limit').textContent = limitText($('note'));
  });
  $('record').addEventListener('click', onRecord);
  $('retake').addEventListener('click', onRecord);
  $('save').addEventListener('click', onSave);
  $('upload').addEventListener('change', onUpload);
  $('camera').addEventListener('click', async () => {
    clearError();
    if (state.stream) {
      stopCamera();
      return;
    }
    try {
      await startCamera();
    } catch (error) {
      showError(error.message || String(error));
    }
  });
  $('playback').addEventListener('error', () => {
    if (state.pending?.source === 'uploaded') {
      setStatus(`${state.pending.filename}: this browser cannot show it. If it is a video, save it: the journal says whether it can read it.`);
    }
  });
  // A token given in the address is kept by the server as a cookie; do not leave it in the address bar.
  const url = new URL(window.location.href);
  if (url.searchParams.has('token')) {
    url.searchParams.delete('token');
    window.history.replaceState(null, '', url.pathname + (url.search || '') + url.hash);
  }
  updateStage();
  updateControls();
  try {
    const health = await api('/api/health');
    setClasses(health.classes || []);
    if (Number.isFinite(health.max_note)) {
      state.maxNote = health.max_note;
      $('note').maxLength = health.max_note;
    }
    $('model-info').textContent = `Model ${health.model || '?'}${health.version ? ` · version ${health.version}` : ''}`;
  } catch (error) {
    $('model-info').textContent = 'The model is not available.';
    showError(error.message || String(error));
  }
  try {
    await loadEntries();
  } catch (error) {
    renderAll();
    showError(error.message || String(error));
  }
  document.body.dataset.ready = 'true';
}

init();
