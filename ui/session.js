// One session in detail: what it is, its summaries, its prompts, its observations (type, title, files,
// facts; newest first) and its queue messages with status, attempts and last error (every unfinished one,
// the newest processed ones). A long session shows its newest part, with a button for the rest. The view
// refetches when an event concerns this session, or when the queue moved while it has unfinished messages.
// `?observation=ID` or `?summary=ID` (a search hit) highlights that one, scrolls to it and focuses it.

import { get } from './api.js';
import { badge, count, el, emptyState, plural, reconcile, replace } from './dom.js';
import { sessionOf } from './live.js';
import { projectName } from './sessions.js';
import { timeEl } from './time.js';

/** Observations drawn at first; the rest wait behind a button, so a huge session stays quick to show. */
const SHOWN = 200;
/** Processed queue messages drawn at first (the newest); unfinished ones are always all shown. */
const PROCESSED_SHOWN = 50;

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
    o.narrative ? el('p', { class: 'narrative', text: o.narrative }) : null,
    fileList('Read', o.files_read),
    fileList('Modified', o.files_modified),
    o.facts?.length ? el('ul', { class: 'facts' }, o.facts.map((f) => el('li', { text: f }))) : null,
    o.concepts?.length ? el('p', { class: 'concepts' }, o.concepts.map((c) => badge(c, 'concept'))) : null,
    madeBy(o),
  );
}

/** Who made a piece of memory, and why `local` stood in when it did. */
export function madeBy(m) {
  if (m.fallback) {
    return el('p', { class: 'made-by fallback', role: 'note' }, el('strong', { text: 'Fallback memory (local): ' }), m.fallback);
  }
  if (!m.provider || m.provider === 'local') return null;
  return el('p', { class: 'made-by muted', text: `Made by ${m.provider}${m.model ? ` · ${m.model}` : ''}` });
}

/** What a summary says: request, investigated, learned, completed, next steps, notes, its files and its maker. */
export function summaryBody(s) {
  const part = (label, text) => (text ? [el('dt', { text: label }), el('dd', { text })] : null);
  return [
    el(
      'dl',
      {},
      part('Request', s.request),
      part('Investigated', s.investigated),
      part('Learned', s.learned),
      part('Completed', s.completed),
      part('Next steps', s.next_steps),
      part('Notes', s.notes),
    ),
    fileList('Files read', s.files_read),
    fileList('Files edited', s.files_edited),
    madeBy(s),
  ];
}

function summaryItem(s) {
  return el('article', { class: 'summary', dataset: { summaryId: s.id } }, el('p', { class: 'muted' }, `Up to prompt ${s.prompt_number} · `, timeEl(s.created_at)), summaryBody(s));
}

/** The observation or summary the address points at (`?observation=ID`, `?summary=ID`), if any. */
function targetOf(params) {
  for (const kind of ['observation', 'summary']) {
    const id = params.get(kind);
    if (id && /^\d+$/.test(id)) return { kind, id };
  }
  return null;
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
  #showAllMessages = false;
  #data = null;
  #unfinished = false;
  /** The parts that change, inside a skeleton built on the first render. */
  #parts = null;
  /** What the address points at, and whether the view has scrolled to it yet. */
  #target = null;
  #reached = false;

  constructor(ctx, route) {
    this.#id = route.id;
    this.#target = targetOf(route.params);
    this.root = el('section', { class: 'view' }, el('p', { class: 'muted', text: 'Loading…' }));
  }

  accepts(route) {
    return route.name === 'session' && route.id === this.#id;
  }

  setRoute(route) {
    this.#target = targetOf(route.params);
    this.#reached = false;
  }

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
    this.#parts = null;
    replace(
      this.root,
      el('h1', { text: 'Session not found' }),
      emptyState(`There is no session ${this.#id}.`, el('p', {}, 'It may have been deleted. ', el('a', { href: '#/sessions', text: 'Back to all sessions' }))),
    );
    return true;
  }

  #skeleton() {
    const p = {
      heading: el('h1'),
      facts: el('dl', { class: 'facts-grid' }),
      summariesTitle: el('h2', { text: 'Summary' }),
      summaries: el('div', { class: 'summaries' }),
      noSummary: el('p', { class: 'muted' }),
      prompts: el('ol', { class: 'prompts' }),
      noPrompts: el('p', { class: 'muted', text: 'No prompts stored (none yet, or all private).' }),
      observationsCount: el('span', { class: 'muted' }),
      observations: el('ol', { class: 'observations', reversed: true }),
      noObservations: el('p', { class: 'muted', text: 'No observations yet: each tool use the agent makes becomes one.' }),
      more: el('p'),
      messages: el('tbody'),
      messagesTable: null,
      moreMessages: el('p'),
      missing: el('p', { class: 'notice', role: 'status', hidden: true }),
      noMessages: el('p', { class: 'muted', text: 'No queue messages (processed ones are pruned after the retention period).' }),
    };
    p.messagesTable = el(
      'div',
      { class: 'table-wrap' },
      el(
        'table',
        { class: 'data messages' },
        el('caption', { class: 'visually-hidden', text: 'This session’s queue messages' }),
        el('thead', {}, el('tr', {}, ['Message', 'What', 'Status', 'Attempts', 'Last error', 'Queued'].map((h) => el('th', { scope: 'col', class: h === 'Attempts' || h === 'Message' ? 'num' : null, text: h })))),
        p.messages,
      ),
    );
    replace(
      this.root,
      el('p', { class: 'crumbs' }, el('a', { href: '#/sessions', text: '← All sessions' })),
      p.heading,
      p.missing,
      p.facts,
      p.summariesTitle,
      p.summaries,
      p.noSummary,
      el('h2', { text: 'Prompts' }),
      p.prompts,
      p.noPrompts,
      el('h2', {}, 'Observations ', p.observationsCount),
      p.observations,
      p.noObservations,
      p.more,
      el('h2', { text: 'Queue messages' }),
      p.messagesTable,
      p.moreMessages,
      p.noMessages,
    );
    return p;
  }

  render(data) {
    this.#data = data;
    const { session, prompts, observations, summaries, messages } = data;
    this.#unfinished = messages.some((m) => m.status === 'pending' || m.status === 'processing');
    this.title = `${projectName(session.project)} · session ${session.id}`;
    this.#parts ??= this.#skeleton();
    const p = this.#parts;

    replace(p.heading, projectName(session.project), ' ', badge(session.status));
    replace(
      p.facts,
      el('div', {}, el('dt', { text: 'Session' }), el('dd', { class: 'mono', text: session.agent_session_id })),
      el('div', {}, el('dt', { text: 'Started' }), el('dd', {}, timeEl(session.started_at))),
      el('div', {}, el('dt', { text: 'Ended' }), el('dd', {}, timeEl(session.ended_at))),
      el('div', {}, el('dt', { text: 'Last activity' }), el('dd', {}, timeEl(session.last_activity_at))),
      el('div', {}, el('dt', { text: 'Prompts' }), el('dd', { text: count(session.prompt_counter) })),
      el('div', {}, el('dt', { text: 'Observations' }), el('dd', { text: count(observations.length) })),
    );

    p.summariesTitle.textContent = summaries.length > 1 ? 'Summaries' : 'Summary';
    reconcile(p.summaries, summaries.slice().reverse(), (s) => s.id, summaryItem);
    p.noSummary.hidden = summaries.length > 0;
    p.noSummary.textContent = session.status === 'active' ? 'No summary yet: one is made when the agent stops.' : 'No summary.';

    reconcile(p.prompts, prompts, (prompt) => prompt.prompt_number, (prompt) => el('li', { value: prompt.prompt_number, text: prompt.text }));
    p.noPrompts.hidden = prompts.length > 0;

    // Newest first, so what just happened is at the top.
    const newestFirst = observations.slice().reverse();
    const target = this.#target;
    if (target?.kind === 'observation' && newestFirst.findIndex((o) => String(o.id) === target.id) >= SHOWN) this.#showAll = true;
    const shown = this.#showAll ? newestFirst : newestFirst.slice(0, SHOWN);
    p.observationsCount.textContent = `(${count(observations.length)})`;
    p.observations.start = observations.length;
    reconcile(p.observations, shown, (o) => o.id, observationItem);
    p.noObservations.hidden = observations.length > 0;
    p.more.hidden = shown.length === observations.length;
    if (!p.more.hidden) {
      replace(
        p.more,
        `Showing the newest ${count(shown.length)} of ${plural(observations.length, 'observation')}. `,
        el('button', { type: 'button', dataset: { key: 'show-all' }, on: { click: () => this.#expand() } }, 'Show all'),
      );
    }

    // The server lists failed and stuck first, then processing, pending, and processed oldest first.
    const unfinished = messages.filter((m) => m.status !== 'processed');
    const processed = messages.filter((m) => m.status === 'processed');
    const processedShown = this.#showAllMessages ? processed : processed.slice(-PROCESSED_SHOWN);
    reconcile(p.messages, [...unfinished, ...processedShown], (m) => m.id, messageRow);
    const hidden = processed.length - processedShown.length;
    p.moreMessages.hidden = hidden === 0;
    if (hidden > 0) {
      replace(
        p.moreMessages,
        `${plural(hidden, 'older processed message')} not shown. `,
        el('button', { type: 'button', dataset: { key: 'show-all-messages' }, on: { click: () => this.#expandMessages() } }, 'Show all'),
      );
    }
    p.messagesTable.hidden = messages.length === 0;
    p.noMessages.hidden = messages.length > 0;
    this.#markTarget();
  }

  /** Highlights the target on every render; scrolls to it and focuses it once per navigation. */
  #markTarget() {
    const p = this.#parts;
    const t = this.#target;
    let found = null;
    for (const [kind, list, key] of [['observation', p.observations, 'observationId'], ['summary', p.summaries, 'summaryId']]) {
      for (const node of list.children) {
        const hit = t?.kind === kind && node.dataset[key] === t.id;
        node.classList.toggle('target', hit);
        if (hit) {
          node.setAttribute('aria-current', 'true');
          node.tabIndex = -1;
          found = node;
        } else {
          node.removeAttribute('aria-current');
        }
      }
    }
    p.missing.hidden = !t || found !== null;
    if (t && !found) p.missing.textContent = `The ${t.kind} this link points at is no longer in this session.`;
    if (!found || this.#reached) return;
    this.#reached = true;
    found.scrollIntoView({ block: 'center' });
    found.focus({ preventScroll: true });
  }

  #expandMessages() {
    this.#showAllMessages = true;
    if (this.#data) this.render(this.#data);
  }

  #expand() {
    this.#showAll = true;
    if (this.#data) this.render(this.#data);
  }
}
