// One session in detail: what it is, its summaries, its prompts, its observations (type, title, files,
// facts; newest first) and its queue messages with status, attempts and last error. It refetches when an
// event concerns this session, or when the queue moved while this session still has unfinished messages.

import { get } from './api.js';
import { badge, count, el, emptyState, plural, replace } from './dom.js';
import { sessionOf } from './live.js';
import { projectName } from './sessions.js';
import { timeEl } from './time.js';

/** Observations drawn at first; the rest wait behind a button, so a huge session stays quick to show. */
const SHOWN = 200;

function fileList(label, files) {
  if (!files?.length) return null;
  return el('div', { class: 'files' }, el('span', { class: 'files-label', text: `${label}:` }), el('ul', {}, files.map((f) => el('li', { class: 'mono', text: f }))));
}

function observationItem(o) {
  return el(
    'li',
    { class: 'observation', dataset: { observationId: o.id } },
    el(
      'div',
      { class: 'observation-head' },
      badge(o.type, `type-${o.type}`),
      el('span', { class: 'observation-title', text: o.title }),
      el('span', { class: 'muted observation-meta' }, `${o.tool_name} · prompt ${o.prompt_number} · `, timeEl(o.created_at)),
    ),
    o.subtitle ? el('p', { class: 'observation-subtitle', text: o.subtitle }) : null,
    fileList('Read', o.files_read),
    fileList('Modified', o.files_modified),
    o.facts?.length ? el('ul', { class: 'facts' }, o.facts.map((f) => el('li', { text: f }))) : null,
  );
}

function summaryItem(s) {
  const part = (label, text) => (text ? [el('dt', { text: label }), el('dd', { text })] : null);
  return el(
    'article',
    { class: 'summary', dataset: { summaryId: s.id } },
    el('p', { class: 'muted' }, `Up to prompt ${s.prompt_number} · `, timeEl(s.created_at)),
    el('dl', {}, part('Request', s.request), part('Investigated', s.investigated), part('Completed', s.completed), part('Next steps', s.next_steps)),
    fileList('Files read', s.files_read),
    fileList('Files edited', s.files_edited),
  );
}

/** The status of a queue message as a badge; a processing message past the threshold shows as stuck. */
export function messageStatus(m) {
  return m.stuck ? badge('stuck') : badge(m.status);
}

/** What a message asks for: the tool it observes, or the summary. */
export function messageWhat(m) {
  return m.kind === 'summarize' ? 'Summary' : m.tool_name || 'Observation';
}

function messageRow(m) {
  return el(
    'tr',
    { dataset: { messageId: m.id } },
    el('td', { class: 'num mono', text: `#${m.id}` }),
    el('td', { text: messageWhat(m) }),
    el('td', {}, messageStatus(m)),
    el('td', { class: 'num', text: count(m.attempts) }),
    el('td', { class: 'error-text', text: m.last_error ?? '' }),
    el('td', {}, timeEl(m.created_at)),
  );
}

export class SessionView {
  name = 'session';
  title = 'Session';
  interval = 400;
  #id;
  #showAll = false;
  #data = null;
  #unfinished = false;

  constructor(ctx, route) {
    this.#id = route.id;
    this.root = el('section', { class: 'view' }, el('p', { class: 'muted', text: 'Loading…' }));
  }

  accepts(route) {
    return route.name === 'session' && route.id === this.#id;
  }

  setRoute() {}

  wants(name, data) {
    if (name === 'processing_status') return this.#unfinished;
    return sessionOf(data) === this.#id;
  }

  load(signal) {
    return get(`/api/sessions/${this.#id}`, {}, signal);
  }

  renderError(error) {
    if (error.status !== 404) return false;
    this.title = 'Session not found';
    replace(
      this.root,
      el('h1', { text: 'Session not found' }),
      emptyState(`There is no session ${this.#id}.`, el('p', {}, 'It may have been deleted. ', el('a', { href: '#/sessions', text: 'Back to all sessions' }))),
    );
    return true;
  }

  render(data) {
    this.#data = data;
    const { session, prompts, observations, summaries, messages } = data;
    this.#unfinished = messages.some((m) => m.status === 'pending' || m.status === 'processing');
    this.title = `${projectName(session.project)} · session ${session.id}`;
    const newestFirst = observations.slice().reverse();
    const shown = this.#showAll ? newestFirst : newestFirst.slice(0, SHOWN);
    replace(
      this.root,
      el('p', { class: 'crumbs' }, el('a', { href: '#/sessions', text: '← All sessions' })),
      el('h1', {}, projectName(session.project), ' ', badge(session.status)),
      el(
        'dl',
        { class: 'facts-grid' },
        el('div', {}, el('dt', { text: 'Session' }), el('dd', { class: 'mono', text: session.agent_session_id })),
        el('div', {}, el('dt', { text: 'Started' }), el('dd', {}, timeEl(session.started_at))),
        el('div', {}, el('dt', { text: 'Ended' }), el('dd', {}, timeEl(session.ended_at))),
        el('div', {}, el('dt', { text: 'Last activity' }), el('dd', {}, timeEl(session.last_activity_at))),
        el('div', {}, el('dt', { text: 'Prompts' }), el('dd', { text: count(session.prompt_counter) })),
        el('div', {}, el('dt', { text: 'Observations' }), el('dd', { text: count(observations.length) })),
      ),
      el('h2', { text: summaries.length > 1 ? 'Summaries' : 'Summary' }),
      summaries.length
        ? summaries.slice().reverse().map(summaryItem)
        : el('p', { class: 'muted', text: session.status === 'active' ? 'No summary yet: one is made when the agent stops.' : 'No summary.' }),
      el('h2', { text: 'Prompts' }),
      prompts.length
        ? el('ol', { class: 'prompts' }, prompts.map((p) => el('li', { value: p.prompt_number, text: p.text })))
        : el('p', { class: 'muted', text: 'No prompts stored (none yet, or all private).' }),
      el('h2', {}, 'Observations ', el('span', { class: 'muted', text: `(${count(observations.length)})` })),
      observations.length
        ? el('ol', { class: 'observations', reversed: true, start: observations.length }, shown.map(observationItem))
        : el('p', { class: 'muted', text: 'No observations yet: each tool use the agent makes becomes one.' }),
      shown.length < observations.length
        ? el(
            'p',
            {},
            `Showing the newest ${count(shown.length)} of ${plural(observations.length, 'observation')}. `,
            el('button', { type: 'button', dataset: { key: 'show-all' }, on: { click: () => this.#expand() } }, 'Show all'),
          )
        : null,
      el('h2', { text: 'Queue messages' }),
      messages.length
        ? el(
            'div',
            { class: 'table-wrap' },
            el(
              'table',
              { class: 'data messages' },
              el('caption', { class: 'visually-hidden', text: 'This session’s queue messages' }),
              el('thead', {}, el('tr', {}, ['Message', 'What', 'Status', 'Attempts', 'Last error', 'Queued'].map((h) => el('th', { scope: 'col', class: h === 'Attempts' || h === 'Message' ? 'num' : null, text: h })))),
              el('tbody', {}, messages.map(messageRow)),
            ),
          )
        : el('p', { class: 'muted', text: 'No queue messages (processed ones are pruned after the retention period).' }),
    );
  }

  #expand() {
    this.#showAll = true;
    if (this.#data) this.render(this.#data);
  }
}
