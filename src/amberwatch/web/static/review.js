// Reviewer queue: one card per flagged site (the detection outlined on its chip, what the readers said), and one
// decision for all of a site's flags. The count of what awaits review stays live: after each decision and polled.
'use strict';

(function () {
  const { el, api, pct, ha } = window.aw;
  const POLL_MS = 20000;
  const state = { token: null, timer: null };
  window.amberwatchReview = state;   // for the browser tests

  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const when = (t) => t.slice(0, 16).replace('T', ' ');

  function showCount(pending) {
    document.getElementById('queue-msg').textContent = pending.flags
      ? `${plural(pending.sites, 'site')} to review (${plural(pending.flags, 'flag')})` : 'Nothing to review.';
    const open = document.querySelectorAll('.card[data-status="pending"]').length;
    document.getElementById('queue-new').hidden = pending.sites <= open;   // sites flagged since the queue loaded
  }

  function heading(site) {
    const n = site.counts.not_mining, y = site.counts.confirmed;
    const readers = n + y > 1 ? ` (${n + y} readers)` : '';
    if (n && y) return `Readers disagree: ${n} not mining, ${y} mining`;
    if (!n) return `Confirmed mining${readers}`;
    const cats = Object.entries(site.categories).map(([c, k]) => (k > 1 ? `${c} (${k})` : c));
    return `Not mining: ${cats.join(', ') || 'other'}${readers}`;
  }

  function facts(site) {
    const first = when(site.first_flagged_at), last = when(site.last_flagged_at);
    const flagged = first === last ? ` · flagged ${first}` : ` · flagged ${first} to ${last}`;
    return el('p', { className: 'facts' }, 'Detection ',
      el('a', { href: `/?scan=${site.scan_id}#d=${site.detection_id}` }, `#${site.detection_id}`),
      site.area_ha != null ? ` · ${ha(site.area_ha)} ha · ${pct(site.mean_prob)}` : ' · detection no longer exists',
      site.place ? ` · ${site.place}` : '', flagged, lookedAt(site));
  }

  // The imagery dates readers flagged the site on (the map layer they looked at), when the layers are dated.
  function lookedAt(site) {
    const dates = [...new Set(site.flags.map((f) => f.imagery_date).filter(Boolean))].sort();
    return dates.length ? el('span', { className: 'looked-at' }, ` · flagged on the imagery of ${dates.join(', ')}`) : null;
  }

  function notes(site) {
    const said = (f) => (f.verdict === 'not_mining' ? `Not mining${f.category ? ` (${f.category})` : ''}: ` : 'Mining: ');
    const items = site.flags.filter((f) => f.comment).map((f) =>
      el('li', {}, site.flags.length > 1 ? el('span', { className: 'said' }, said(f)) : null,
        el('span', { className: 'comment' }, f.comment)));
    return items.length ? el('ul', { className: 'notes' }, ...items) : null;
  }

  function buttons(site, decide) {
    const b = (cls, label, what, verdict) =>
      el('button', { type: 'button', className: cls, onclick: () => decide(what, verdict) }, label);
    if (site.counts.not_mining && site.counts.confirmed) {
      return [b('accept', 'Not mining', 'accept', 'not_mining'), b('accept', 'Mining', 'accept', 'confirmed')];
    }
    return [b('accept', 'Accept', 'accept'), b('reject', 'Reject', 'reject')];
  }

  function outcome(out) {
    if (out.status === 'rejected') return `Rejected (${plural(out.rejected.length, 'flag')})`;
    return `Accepted: ${out.verdict === 'not_mining' ? 'not mining' : 'mining'}` +
      (out.example_id ? ', added to the training examples' : '') +
      (out.rejected.length ? ` · ${plural(out.rejected.length, 'other flag')} rejected` : '');
  }

  function card(site) {
    const msg = el('p', { className: 'msg', role: 'alert' });
    const done = el('p', { className: 'outcome', role: 'status' });
    const actions = el('div', { className: 'actions' });
    const node = el('article', { className: 'card site', dataset: { id: String(site.detection_id), status: 'pending' } },
      el('div', { className: 'chip' }, el('img', { src: site.chip_url, loading: 'lazy', width: 256, height: 256,
        alt: `Detection ${site.detection_id} and its surroundings, its outline drawn in cyan` })),
      el('h2', {}, heading(site)), facts(site), notes(site), actions, done, msg);
    async function decide(what, verdict) {
      const all = actions.querySelectorAll('button');
      all.forEach((btn) => { btn.disabled = true; });
      msg.textContent = '';
      try {
        const out = await api(`/api/feedback/sites/${site.detection_id}/${what}`,
          { method: 'POST', token: state.token, body: { verdict: verdict || null, flag_ids: site.flag_ids } });
        node.classList.add('decided');
        node.dataset.status = out.status;
        done.textContent = outcome(out);
        showCount(out.remaining);
      } catch (e) {
        if (e.status === 409) return reloadSite(node, site.detection_id, e.message);
        all.forEach((btn) => { btn.disabled = false; });
        msg.textContent = e.message;
      }
    }
    actions.append(...buttons(site, decide));
    return node;
  }

  // A site whose flags changed while the card was shown (a reader flagged again, another reviewer decided): the
  // card is redrawn from the server, so the reviewer decides on what the readers say now.
  async function reloadSite(node, detectionId, why) {
    try {
      const data = await api('/api/feedback/sites?status=pending', { token: state.token });
      const site = data.sites.find((s) => s.detection_id === detectionId);
      const fresh = site ? card(site) : el('article', { className: 'card site decided', dataset: { id: String(detectionId), status: 'gone' } },
        el('h2', {}, `Detection #${detectionId}`), el('p', { className: 'outcome' }, 'Already decided by another reviewer.'));
      node.replaceWith(fresh);
      if (site) fresh.querySelector('.msg').textContent = `${why} The card now shows the flags as they are.`;
      showCount(data.pending);
    } catch (e) {
      node.querySelector('.msg').textContent = e.message;
    }
  }

  async function load() {
    const err = document.getElementById('queue-error');
    try {
      const data = await api('/api/feedback/sites?status=pending', { token: state.token });
      err.textContent = '';
      document.getElementById('queue').replaceChildren(...data.sites.map(card));
      document.getElementById('queue-bar').hidden = false;
      showCount(data.pending);
    } catch (e) {
      err.textContent = e.message;
    }
  }

  async function poll() {
    if (document.hidden || !state.token) return;
    try {
      showCount(await api('/api/feedback/summary', { token: state.token }));
      document.getElementById('queue-error').textContent = '';
    } catch (e) {
      document.getElementById('queue-error').textContent = e.message;
    }
  }
  state.poll = poll;

  document.getElementById('queue-new').addEventListener('click', load);
  window.aw.tokenGate((token) => {
    state.token = token;
    document.getElementById('token-msg').textContent = '';   // a stale token's error, now that one works
    load();
    clearInterval(state.timer);
    state.timer = setInterval(poll, POLL_MS);
  });
})();
