// Reviewer queue: pending readers' flags with chips; accept turns a flag into a labelled example.
'use strict';

(function () {
  const { el, api, pct, ha } = window.aw;

  function card(fb, token) {
    const msg = el('p', { className: 'msg', role: 'status' });
    const node = el('article', { className: 'card', dataset: { id: String(fb.id) } },
      el('img', { src: fb.thumbnail_url, alt: `Imagery of detection ${fb.detection_id}`, loading: 'lazy' }),
      el('h3', {}, fb.verdict === 'not_mining' ? `Not mining: ${fb.category || 'other'}` : 'Confirmed mining'),
      el('p', {}, `Detection `, el('a', { href: `/?scan=${fb.scan_id}#d=${fb.detection_id}` }, `#${fb.detection_id}`),
        fb.area_ha != null ? ` · ${ha(fb.area_ha)} ha · ${pct(fb.mean_prob)}` : ' · detection no longer exists',
        ` · flagged ${fb.created_at.slice(0, 16).replace('T', ' ')}`),
      fb.comment ? el('p', { className: 'comment' }, fb.comment) : null,
      el('div', { className: 'actions' },
        el('button', { type: 'button', className: 'accept', onclick: () => decide('accept') }, 'Accept'),
        el('button', { type: 'button', className: 'reject', onclick: () => decide('reject') }, 'Reject')),
      msg);
    async function decide(what) {
      msg.textContent = '…';
      try {
        const out = await api(`/api/feedback/${fb.id}/${what}`, { method: 'POST', token });
        node.classList.add('decided');
        node.querySelectorAll('button').forEach((b) => { b.disabled = true; });
        msg.textContent = out.status === 'accepted' ? `Accepted: example #${out.example_id} added` : 'Rejected';
        node.dataset.status = out.status;
      } catch (e) {
        msg.textContent = e.message;
      }
    }
    return node;
  }

  async function load(token) {
    const out = document.getElementById('queue-msg');
    try {
      const data = await api('/api/feedback?status=pending', { token });
      out.textContent = data.count ? `${data.count} correction(s) to review` : 'Nothing to review.';
      document.getElementById('queue').replaceChildren(...data.feedback.map((fb) => card(fb, token)));
    } catch (e) {
      out.textContent = e.message;
    }
  }

  window.aw.tokenGate(load);
})();
