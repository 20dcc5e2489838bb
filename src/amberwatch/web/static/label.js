// Labelling page: the scan's most uncertain chips first (or the tiles like the confirmed sites, or the tiles a label
// strategy picked: ?strategy=uncertain|similar|spread|random|mix fills the queue with them); keys y / n / s(kip) / u(ndo),
// and i (no imagery) for area sample units. A change sample's unit is shown at both dates and answered at each:
// y / n / i for the later date as for one date, Shift+Y / Shift+N / Shift+I for the earlier one.
'use strict';

(function () {
  const { el, api, pct } = window.aw;
  const params = new URL(location.href).searchParams;
  const scanMode = !params.get('sample') && !params.get('examples');   // a scan's queue (not a sample or examples)
  const mode = scanMode && params.get('mode') === 'like' ? 'like' : 'uncertain';
  const strategySelect = document.getElementById('strategy');
  const strategies = [...strategySelect.options].map((o) => o.value).filter(Boolean);
  const strategy = scanMode && strategies.includes(params.get('strategy')) ? params.get('strategy') : null;
  const state = { token: null, queue: [], current: null, done: [], session: 0, scanLabelled: 0, scanId: null,
    pick: { earlier: null, later: null }, pickKey: null };   // a change unit's answers so far, per date
  window.amberwatchLabel = state;   // for the browser tests

  // Chips are reviewers' data (an example's chip is training data): fetched with the token, shown as a blob URL.
  const loading = new Map();   // img -> { url, seq } of its latest load
  async function loadChip(img, url) {
    const last = loading.get(img) || { url: null, seq: 0 };
    if (url === last.url) return;   // show() runs again for the same chip after a refill
    const seq = last.seq + 1;
    loading.set(img, { url, seq });
    const current = () => loading.get(img).seq === seq;
    if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
    img.removeAttribute('src');
    if (!url) return;
    try {
      const res = await fetch(url, { headers: { Authorization: 'Bearer ' + state.token } });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const blob = await res.blob();
      if (current()) img.src = URL.createObjectURL(blob);
    } catch (e) {
      if (current()) document.getElementById('label-msg').textContent = 'Chip not shown: ' + e.message;
    }
  }

  // Shown at most twice its own size: a view is 256 to 512 pixels a side, an example its stored size.
  const MAX_SHOWN_PX = 512;
  const chipImg = document.getElementById('chip');
  chipImg.addEventListener('load', () => {
    document.getElementById('chip-wrap').style.maxWidth = `${Math.min(MAX_SHOWN_PX, 2 * chipImg.naturalWidth)}px`;
  });

  // What the labeller reads about an item: a kind, a place and a date in words, never the item's internal key.
  const KINDS = { detection: 'Detected site', cell: 'Part of a tile', tile: 'Whole tile', unit: 'Sample unit',
    example: 'Stored example' };
  function placeText(it) {
    if (it.lat === null) return null;
    const coords = `${it.lat.toFixed(4)}, ${it.lon.toFixed(4)}`;
    return it.place ? `${it.place} (${coords})` : coords;
  }
  function title(it) { return [KINDS[it.kind] || 'Chip', it.place].filter(Boolean).join(', '); }
  const WORDS = { mining: 'mining', not_mining: 'not mining', no_imagery: 'no imagery', skip: 'skip' };

  function placeOutline(box, outline) {
    if (outline) {
      const [x0, y0, x1, y1] = outline;
      Object.assign(box.style, { left: `${x0 * 100}%`, top: `${y0 * 100}%`, width: `${(x1 - x0) * 100}%`, height: `${(y1 - y0) * 100}%` });
    }
    box.hidden = !outline;
  }

  // A change sample's unit: both dates' views side by side (stacked on a phone), each captioned with its date.
  function showPair(it) {
    const views = it ? it.dates : [];
    for (const fig of document.querySelectorAll('#pair figure')) {
      const at = fig.dataset.at;
      const view = views.find((d) => d.at === at);
      const img = fig.querySelector('img');
      loadChip(img, view ? view.chip_url : null);
      placeOutline(fig.querySelector('.outline'), view ? it.outline : null);
      const when = at === 'earlier' ? 'Earlier' : 'Later';
      fig.querySelector('figcaption').textContent = view ? `${when}: imagery of ${view.date}` : `${when} date`;
      img.alt = view ? `The place in the imagery of ${view.date}, the unit outlined` : '';
      for (const b of fig.querySelectorAll('button')) {
        b.disabled = !view;
        b.setAttribute('aria-pressed', String(state.pick[at] === b.dataset.label));
      }
    }
  }

  function show() {
    const img = document.getElementById('chip');
    const info = document.getElementById('chip-info');
    const where = state.sampleId ? `in ${state.dates ? 'change' : 'area'} sample #${state.sampleId}`
      : state.examples ? `of '${state.examples}' examples checked` : `in scan #${state.scanId}`;
    document.getElementById('progress').textContent =
      `${state.session} labelled this session · ${state.scanLabelled} ${where} · ${state.queue.length + (state.current ? 1 : 0)} queued`;
    const it = state.current;
    if (!it || it.key !== state.pickKey) state.pick = { earlier: null, later: null };
    state.pickKey = it ? it.key : null;
    const pair = Boolean(state.dates);
    document.getElementById('chip-wrap').hidden = pair;
    document.getElementById('pair').hidden = !pair;
    if (pair) showPair(it);
    if (!it) {
      loadChip(img, null);
      document.getElementById('outline').hidden = true;
      info.textContent = state.sampleId ? 'No more units to label in this sample.' : 'No more chips to label in this scan.';
      document.body.dataset.chip = '';
      return;
    }
    if (!pair) loadChip(img, it.chip_url);
    placeOutline(document.getElementById('outline'), pair ? null : it.outline);
    const prob = it.prob !== null ? `P(mining) ${pct(it.prob)} (threshold ${pct(it.threshold)})`
      : it.kind === 'tile' ? 'no probability' : 'label hidden (blind review)';
    const date = it.dates ? `imagery of ${it.dates.map((d) => d.date).join(' and ')}`
      : it.capture_date ? `imagery of ${it.capture_date.slice(0, 10)}` : 'imagery date unknown';
    info.textContent = [KINDS[it.kind] || 'Chip', prob, placeText(it) || 'place unknown', date, it.reason]
      .filter(Boolean).join(' · ');
    document.body.dataset.chip = it.key;
  }

  async function refill() {
    const pending = new Set([state.current && state.current.key, ...state.queue.map((i) => i.key)]);
    const q = new URLSearchParams({ limit: '30' });
    if (params.get('scan')) q.set('scan', params.get('scan'));
    if (params.get('sample')) q.set('sample', params.get('sample'));
    if (params.get('examples')) q.set('examples', params.get('examples'));
    if (scanMode && !strategy) q.set('mode', mode);
    let fill = null;
    if (strategy) {   // top the queue up with the strategy's tiles, then read them
      const body = { strategy, count: 30 };
      if (params.get('scan')) body.scan_id = Number(params.get('scan'));
      fill = await api('/api/label/queue/fill', { method: 'POST', token: state.token, body });
      q.set('strategy', strategy);
    }
    const data = await api('/api/label/queue?' + q, { token: state.token });
    state.mode = data.mode || null;
    const note = document.getElementById('mode-note');
    const noteText = data.note || (fill && fill.note) || '';
    note.textContent = noteText.replace(/^./, (c) => c.toUpperCase()) + (/[^.]$/.test(noteText) ? '.' : '');
    note.hidden = !noteText;
    inUse(data);
    state.scanId = data.scan_id;
    state.sampleId = data.sample_id || null;
    state.examples = data.examples || null;
    state.dates = data.dates || null;   // a change sample: [earlier, later]
    document.getElementById('labeller').classList.toggle('change', Boolean(state.dates));
    for (const k of ['y', 'n', 'i']) document.getElementById('btn-' + k).hidden = Boolean(state.dates) || (k === 'i' && !state.sampleId);
    document.getElementById('category-row').hidden = Boolean(state.dates);   // no category for two dates
    if (state.examples) {
      document.getElementById('hint').textContent = 'Is this surface mining? Examples already in the store are ' +
        'shown without their label; disagreeing takes an example out of training.';
    }
    if (state.sampleId) {
      document.getElementById('hint').textContent = 'Is the outlined square surface mining? Area sample units are ' +
        'shown in random order, without the map\'s answer, so your labels can measure the map\'s accuracy. ' +
        'No imagery there (black or blank)? Answer "no imagery": another unit is drawn instead.';
    }
    if (state.dates) {
      document.getElementById('hint').textContent = 'Is the outlined square surface mining at each date? Answer for ' +
        `the earlier imagery (${state.dates[0]}: Shift+Y, Shift+N, Shift+I) and the later (${state.dates[1]}: y, n, i); ` +
        'the unit is saved once both are answered. Units come in random order, without the map\'s answer. ' +
        'No imagery at either date (black or blank)? Answer "no imagery" there: another unit is drawn instead.';
    }
    if (state.mode === 'strategy') {
      document.getElementById('hint').textContent = 'Is this whole tile surface mining? The tiles were picked by the ' +
        'strategy in use; more are picked as you label.';
    }
    if (state.mode === 'like') {
      document.getElementById('hint').textContent = 'Is this surface mining? Tiles sent from the map come first, ' +
        'then the tiles that look most like the confirmed sites.';
    }
    state.scanLabelled = data.labelled;
    for (const it of data.items) if (!pending.has(it.key)) state.queue.push(it);
    if (!state.current) state.current = state.queue.shift() || null;
    show();
  }

  // Which strategy fills the queue, in the picker's words.
  function inUse(data) {
    const line = document.getElementById('strategy-in-use');
    line.textContent = data.mode === 'strategy' ? `Strategy in use: ${data.words}.`
      : data.mode === 'like' ? 'In use: like the confirmed sites (tiles sent from the map first).'
        : 'In use: the most uncertain chips (sites and parts of tiles nearest the threshold). Pick a strategy to label whole tiles.';
    line.hidden = !data.mode;
  }

  // What the history says about an answer: one label, or a change unit's label at each date.
  function answerText(it, label, labelFrom) {
    if (!labelFrom) return label.replace('_', ' ');
    return `${WORDS[labelFrom]} in ${it.dates[0].date}, ${WORDS[label]} in ${it.dates[1].date}`;
  }

  async function answer(label, labelFrom = null) {
    if (!state.current) return;
    const msg = document.getElementById('label-msg');
    const it = state.current;
    const category = document.getElementById('category').value || null;
    const body = { key: it.key, label, category: label === 'not_mining' && !it.dates ? category : null };
    if (labelFrom) body.label_from = labelFrom;
    try {
      const out = await api('/api/label', { method: 'POST', token: state.token, body });
      state.done.push({ item: it, action: out });
      if (label !== 'skip') state.session += 1;
      state.scanLabelled += 1;
      const stored = out.replacement_key ? ', another unit drawn instead'
        : label === 'skip' || it.kind === 'unit' ? '' : out.created ? ', added to the examples' : ', already an example';
      document.getElementById('history').prepend(el('li', {}, `${title(it)}: ${answerText(it, label, labelFrom)}${stored}`));
      msg.textContent = '';
      state.current = state.queue.shift() || null;
      show();
      if (state.queue.length < 5) await refill();
    } catch (e) {
      msg.textContent = e.message;
    }
  }

  // A change unit's answer at one date; saved once both dates are answered, or at once when a date has no imagery
  // (the unit leaves the sample and another is drawn; a date not answered then is recorded as no imagery too).
  async function pick(at, label) {
    const it = state.current;
    if (!it || !it.dates) return;
    state.pick[at] = label;
    showPair(it);
    const { earlier, later } = state.pick;
    if (label === 'no_imagery' || (earlier && later)) await answer(later || 'no_imagery', earlier || 'no_imagery');
  }

  async function undo() {
    if (!state.done.length) return;
    const msg = document.getElementById('label-msg');
    const last = state.done.pop();
    try {
      await api(`/api/label/${last.action.action_id}/undo`, { method: 'POST', token: state.token });
      if (state.current) state.queue.unshift(state.current);
      state.current = last.item;
      if (last.action.label !== 'skip') state.session -= 1;
      state.scanLabelled -= 1;
      const h = document.getElementById('history');
      h.prepend(el('li', {}, `${title(last.item)}: undone`));
      msg.textContent = '';
      show();
    } catch (e) {
      state.done.push(last);
      msg.textContent = e.message;
    }
  }

  // Keys pressed faster than the server answers are queued and run in order, never dropped.
  let chain = Promise.resolve();
  const enqueue = (fn) => () => { chain = chain.then(fn); return chain; };
  const later = (label) => (state.dates ? pick('later', label) : answer(label));
  const KEYS = { y: enqueue(() => later('mining')), n: enqueue(() => later('not_mining')),
    s: enqueue(() => answer('skip')), u: enqueue(undo),
    i: enqueue(() => (state.sampleId ? later('no_imagery') : null)) };
  const EARLIER = { y: 'mining', n: 'not_mining', i: 'no_imagery' };   // with Shift, on a change sample
  document.addEventListener('keydown', (ev) => {
    if (!state.token || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement.tagName)) return;
    const key = ev.key.toLowerCase();
    const fn = state.dates && ev.shiftKey && EARLIER[key] ? enqueue(() => pick('earlier', EARLIER[key])) : KEYS[key];
    if (fn) { ev.preventDefault(); fn(); }
  });
  for (const k of Object.keys(KEYS)) document.getElementById('btn-' + k).addEventListener('click', KEYS[k]);
  for (const b of document.querySelectorAll('#pair button')) {
    b.addEventListener('click', enqueue(() => pick(b.dataset.at, b.dataset.label)));
  }
  const modeSelect = document.getElementById('mode');
  document.getElementById('mode-row').hidden = !scanMode || Boolean(strategy);
  document.getElementById('strategy-row').hidden = !scanMode;
  document.getElementById('strategy-in-use').hidden = !scanMode;
  modeSelect.value = mode;
  strategySelect.value = strategy || '';
  modeSelect.addEventListener('change', () => {
    const url = new URL(location.href);
    url.searchParams.delete('strategy');
    if (modeSelect.value === 'like') url.searchParams.set('mode', 'like'); else url.searchParams.delete('mode');
    location.assign(url);
  });
  strategySelect.addEventListener('change', () => {
    const url = new URL(location.href);
    url.searchParams.delete('mode');
    if (strategySelect.value) url.searchParams.set('strategy', strategySelect.value); else url.searchParams.delete('strategy');
    location.assign(url);
  });

  window.aw.tokenGate(async (token) => {
    state.token = token;
    document.getElementById('token-msg').textContent = '';   // a stale token's error, now that one works
    document.getElementById('labeller').hidden = false;
    try { await refill(); } catch (e) { document.getElementById('label-msg').textContent = e.message; }
  });
})();
