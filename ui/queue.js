// The queue view: every unfinished message, stuck and failed first, then processing, then pending (the
// server's order), with Retry and Abort per message and "Retry all stuck and failed". Abort deletes the
// message, so it asks first; every action's outcome is announced in the page's status region.

import { get, post } from './api.js';
import { confirmAction } from './confirm.js';
import { count, el, emptyState, plural, reconcile, replace } from './dom.js';
import { messageStatus, messageWhat } from './session.js';
import { projectName } from './sessions.js';
import { timeEl } from './time.js';

/** Messages listed at most; the counts above the table always cover the whole queue. */
const LIMIT = 500;

export class QueueView {
  name = 'queue';
  title = 'Queue';
  interval = 400;
  #ctx;
  #counts;
  #retryAll;
  #table;
  #rows;
  #more;
  #empty;
  #busy = new Set();
  /** Each message's Retry and Abort buttons, kept across redraws of its row so a click is never lost. */
  #buttons = new Map();

  constructor(ctx) {
    this.#ctx = ctx;
    this.#counts = el('dl', { class: 'cards compact' });
    this.#retryAll = el('button', { type: 'button', dataset: { key: 'retry-all' }, on: { click: () => this.#retryStuck() } }, 'Retry all stuck and failed');
    this.#rows = el('tbody');
    this.#more = el('p', { class: 'muted', hidden: true });
    this.#table = el(
      'div',
      { class: 'table-wrap', hidden: true },
      el(
        'table',
        { class: 'data queue' },
        el('caption', { class: 'visually-hidden', text: 'Unfinished messages, stuck and failed first' }),
        el('thead', {}, el('tr', {}, ['Message', 'Session', 'What', 'Status', 'Attempts', 'Last error', 'Queued', 'Actions'].map((h) => el('th', { scope: 'col', class: h === 'Attempts' || h === 'Message' ? 'num' : null, text: h })))),
        this.#rows,
      ),
    );
    this.#empty = emptyState('Nothing waiting', el('p', { text: 'Every message has been processed. New tool uses show up here while they wait for their turn.' }));
    this.#empty.hidden = true;
    this.root = el(
      'section',
      { class: 'view', 'aria-labelledby': 'queue-title' },
      el('h1', { id: 'queue-title', text: 'Queue' }),
      this.#counts,
      el('div', { class: 'toolbar' }, this.#retryAll),
      this.#empty,
      this.#table,
      this.#more,
    );
  }

  accepts(route) {
    return route.name === 'queue';
  }

  setRoute() {}

  wants() {
    return true;
  }

  load(signal) {
    return get('/api/queue', { limit: LIMIT }, signal);
  }

  render({ messages, counts }) {
    replace(
      this.#counts,
      ['stuck', 'failed', 'processing', 'pending'].map((key) =>
        el('div', { class: `card${(key === 'stuck' || key === 'failed') && counts[key] > 0 ? ' alarm' : ''}`, dataset: { metric: key } }, el('dt', { text: key[0].toUpperCase() + key.slice(1) }), el('dd', { class: 'card-value', text: count(counts[key]) })),
      ),
    );
    this.#retryAll.disabled = counts.stuck + counts.failed === 0 || this.#busy.has('all');
    this.#empty.hidden = messages.length > 0;
    this.#table.hidden = messages.length === 0;
    const listed = new Set(messages.map((m) => m.id));
    for (const id of this.#buttons.keys()) {
      if (!listed.has(id)) this.#buttons.delete(id);
    }
    reconcile(this.#rows, messages, (m) => m.id, (m) => this.#row(m));
    const total = counts.pending + counts.processing + counts.failed;
    this.#more.hidden = messages.length >= total;
    this.#more.textContent = `Showing the first ${count(messages.length)} of ${plural(total, 'message')}.`;
  }

  #row(m) {
    const retryable = m.status === 'failed' || m.stuck;
    let buttons = this.#buttons.get(m.id);
    if (!buttons) {
      buttons = {
        retry: el('button', { type: 'button', class: 'retry', dataset: { key: `retry-${m.id}`, action: 'retry' }, 'aria-label': `Retry message ${m.id}` }, 'Retry'),
        abort: el('button', { type: 'button', class: 'abort danger', dataset: { key: `abort-${m.id}`, action: 'abort' }, 'aria-label': `Abort message ${m.id}` }, 'Abort'),
        message: m,
      };
      buttons.retry.addEventListener('click', () => this.#retry(buttons.message));
      buttons.abort.addEventListener('click', () => this.#abort(buttons.message));
      this.#buttons.set(m.id, buttons);
    }
    buttons.message = m;
    return el(
      'tr',
      { dataset: { messageId: m.id, status: m.stuck ? 'stuck' : m.status } },
      el('td', { class: 'num mono', text: `#${m.id}` }),
      el('td', {}, el('a', { href: `#/sessions/${m.session_id}`, text: projectName(m.project) }), el('span', { class: 'muted mono', title: m.agent_session_id, text: ` ${m.agent_session_id.slice(0, 8)}` })),
      el('td', { text: messageWhat(m) }),
      el('td', {}, messageStatus(m)),
      el('td', { class: 'num', text: count(m.attempts) }),
      el('td', { class: 'error-text', text: m.last_error ?? '' }),
      el('td', {}, timeEl(m.created_at)),
      el('td', { class: 'actions' }, retryable ? buttons.retry : null, buttons.abort),
    );
  }

  /** Runs one action unless the same one is still running, announces the outcome, then refetches. */
  async #act(key, work, done, failed) {
    if (this.#busy.has(key)) return;
    this.#busy.add(key);
    try {
      const answer = await work();
      this.#ctx.say(done(answer));
    } catch (e) {
      this.#ctx.say(`${failed}: ${e.message}`, true);
    } finally {
      this.#busy.delete(key);
      this.#ctx.refresh();
    }
  }

  #retry(m) {
    return this.#act(m.id, () => post(`/api/queue/${m.id}/retry`), () => `Message #${m.id} was sent back to the queue.`, `Could not retry message #${m.id}`);
  }

  async #abort(m) {
    if (this.#busy.has(m.id)) return;
    const ok = await confirmAction({
      title: `Abort message #${m.id}?`,
      question: `The ${messageWhat(m)} message of ${projectName(m.project)} is deleted and never processed. This cannot be undone.`,
      action: 'Abort message',
    });
    if (!ok) {
      this.#ctx.say(`Message #${m.id} was kept.`);
      return;
    }
    await this.#act(m.id, () => post(`/api/queue/${m.id}/abort`), () => `Message #${m.id} was aborted.`, `Could not abort message #${m.id}`);
  }

  #retryStuck() {
    this.#retryAll.disabled = true;
    return this.#act(
      'all',
      () => post('/api/queue/retry-stuck'),
      (answer) => (answer.sessions > 0 ? `Stuck and failed messages of ${plural(answer.sessions, 'session')} were sent back to the queue.` : 'Nothing was stuck or failed.'),
      'Could not retry the stuck and failed messages',
    );
  }
}
