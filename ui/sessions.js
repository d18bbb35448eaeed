// The sessions view: every session with its project, start, status, prompt count, queue counts by status
// and last activity; filtered by project and status, sorted by the server (so sorting works across pages),
// one page of 50 at a time. The filters, sort and page live in the URL hash, so Back and reload keep them.

import { get } from './api.js';
import { badge, count, el, emptyState, reconcile } from './dom.js';
import { timeEl } from './time.js';

const PAGE_SIZE = 50;

/** The sortable columns: the server's `sort` value and the order a first click picks. */
const SORTS = {
  project: 'asc',
  started: 'desc',
  prompts: 'desc',
  last_activity: 'desc',
};

const COLUMNS = [
  { label: 'Project', sort: 'project' },
  { label: 'Session' },
  { label: 'Status' },
  { label: 'Started', sort: 'started' },
  { label: 'Prompts', sort: 'prompts', numeric: true },
  { label: 'Queue' },
  { label: 'Last activity', sort: 'last_activity' },
];

/** The queue counts of a session as badges, busiest states first; "—" when it never queued anything. */
export function queueCell(queue) {
  const parts = ['failed', 'processing', 'pending', 'processed']
    .filter((state) => queue[state] > 0)
    .flatMap((state, i) => [i > 0 ? ' ' : null, badge(`${count(queue[state])} ${state}`, state)]);
  return parts.length ? el('span', { class: 'badges' }, parts) : el('span', { class: 'muted', text: '—' });
}

/** A session's project for display. */
export function projectName(project) {
  return project || '(no project)';
}

/** A link to a session, showing the start of the agent's session id. */
export function sessionLink(session) {
  const short = session.agent_session_id.length > 12 ? `${session.agent_session_id.slice(0, 12)}…` : session.agent_session_id;
  return el('a', {
    href: `#/sessions/${session.id}`,
    class: 'mono',
    title: session.agent_session_id,
    'aria-label': `Session ${session.agent_session_id} of ${projectName(session.project)}`,
    dataset: { key: `session-${session.id}` },
    text: short,
  });
}

/** One table row of the sessions table. */
export function sessionRow(item) {
  return el(
    'tr',
    { dataset: { sessionId: item.id } },
    el('td', { class: 'project', text: projectName(item.project) }),
    el(
      'td',
      { class: 'session' },
      sessionLink(item),
      item.author ? el('span', { class: 'author muted', title: 'A teammate\'s session, from the team server', text: ` by ${item.author}` }) : null,
      item.current_prompt ? el('span', { class: 'prompt muted', title: item.current_prompt, text: item.current_prompt }) : null,
    ),
    el('td', { class: 'status' }, badge(item.status)),
    el('td', { class: 'started' }, timeEl(item.started_at)),
    el('td', { class: 'prompts num', text: count(item.prompt_counter) }),
    el('td', { class: 'queue' }, queueCell(item.queue)),
    el('td', { class: 'last-activity' }, timeEl(item.last_activity_at)),
  );
}

/** The empty state of a memtray that has never seen a session. */
export function noSessionsYet() {
  return emptyState(
    'No sessions yet',
    el('p', {}, 'Connect Claude Code so memtray sees its sessions: run ', el('code', { text: 'memtray install-hooks' }), ', then start a Claude Code session.'),
    el('p', { class: 'muted', text: 'Sessions appear here as soon as their first event arrives; this page updates by itself.' }),
  );
}

function readParams(params) {
  const sort = Object.hasOwn(SORTS, params.get('sort')) ? params.get('sort') : 'last_activity';
  const requested = params.get('order');
  const order = requested === 'asc' || requested === 'desc' ? requested : SORTS[sort];
  const status = params.get('status') === 'active' || params.get('status') === 'completed' ? params.get('status') : '';
  const page = Math.max(1, Number.parseInt(params.get('page') ?? '1', 10) || 1);
  return { project: params.get('project') ?? '', status, sort, order, page };
}

function hashFor(state) {
  const params = new URLSearchParams();
  if (state.project) params.set('project', state.project);
  if (state.status) params.set('status', state.status);
  if (state.sort !== 'last_activity' || state.order !== 'desc') {
    params.set('sort', state.sort);
    params.set('order', state.order);
  }
  if (state.page > 1) params.set('page', String(state.page));
  const qs = params.toString();
  return qs ? `#/sessions?${qs}` : '#/sessions';
}

export class SessionsView {
  name = 'sessions';
  title = 'Sessions';
  #ctx;
  #state;
  #projectsKey = '';
  #project;
  #status;
  #clear;
  #headers = new Map();
  #caption;
  #body;
  #content;
  #pager;
  #prev;
  #next;
  #range;
  #emptyPanel = null;

  constructor(ctx, route) {
    this.#ctx = ctx;
    this.#state = readParams(route.params);
    this.#project = el('select', { id: 'filter-project', on: { change: () => this.#go({ project: this.#project.value, page: 1 }) } }, el('option', { value: '', text: 'All projects' }));
    this.#status = el(
      'select',
      { id: 'filter-status', on: { change: () => this.#go({ status: this.#status.value, page: 1 }) } },
      el('option', { value: '', text: 'Any status' }),
      el('option', { value: 'active', text: 'Active' }),
      el('option', { value: 'completed', text: 'Completed' }),
    );
    this.#clear = el('button', { type: 'button', on: { click: () => this.#go({ project: '', status: '', page: 1 }) } }, 'Clear filters');
    const head = el(
      'tr',
      {},
      COLUMNS.map((column) => {
        if (!column.sort) return el('th', { scope: 'col', class: column.numeric ? 'num' : null, text: column.label });
        const arrow = el('span', { class: 'arrow', 'aria-hidden': 'true' });
        const button = el(
          'button',
          { type: 'button', class: 'sort', dataset: { key: `sort-${column.sort}`, sort: column.sort }, on: { click: () => this.#sortBy(column.sort) } },
          column.label,
          arrow,
        );
        const th = el('th', { scope: 'col', class: column.numeric ? 'num' : null }, button);
        this.#headers.set(column.sort, { th, arrow });
        return th;
      }),
    );
    this.#caption = el('caption', { class: 'visually-hidden' });
    this.#body = el('tbody');
    this.#prev = el('button', { type: 'button', dataset: { key: 'page-prev' }, on: { click: () => this.#go({ page: this.#state.page - 1 }) } }, '← Previous');
    this.#next = el('button', { type: 'button', dataset: { key: 'page-next' }, on: { click: () => this.#go({ page: this.#state.page + 1 }) } }, 'Next →');
    this.#range = el('span', { class: 'range', 'aria-live': 'polite' });
    this.#pager = el('nav', { class: 'pager', 'aria-label': 'Pages' }, this.#prev, this.#range, this.#next);
    this.#content = el('div', { class: 'table-wrap' }, el('table', { class: 'data sessions' }, this.#caption, el('thead', {}, head), this.#body));
    this.root = el(
      'section',
      { class: 'view', 'aria-labelledby': 'sessions-title' },
      el('h1', { id: 'sessions-title', text: 'Sessions' }),
      el(
        'div',
        { class: 'filters', role: 'search', 'aria-label': 'Filter sessions' },
        el('label', { for: 'filter-project' }, 'Project'),
        this.#project,
        el('label', { for: 'filter-status' }, 'Status'),
        this.#status,
        this.#clear,
      ),
      this.#content,
      this.#pager,
    );
    this.#syncControls();
  }

  accepts(route) {
    return route.name === 'sessions';
  }

  setRoute(route) {
    this.#state = readParams(route.params);
    this.#syncControls();
  }

  wants() {
    return true;
  }

  async load(signal) {
    const s = this.#state;
    const [page, projects] = await Promise.all([
      get('/api/sessions', { project: s.project, status: s.status, sort: s.sort, order: s.order, limit: PAGE_SIZE, offset: (s.page - 1) * PAGE_SIZE }, signal),
      get('/api/projects', {}, signal),
    ]);
    return { page, projects: projects.projects, state: s };
  }

  render({ page, projects, state }) {
    if (state !== this.#state) return;
    const lastPage = Math.max(1, Math.ceil(page.total / PAGE_SIZE));
    if (state.page > lastPage) {
      // Fewer sessions than the page assumed (a filter changed, sessions were deleted): show the last page.
      this.#go({ page: lastPage }, true);
      return;
    }
    this.#renderProjects(projects);
    const filtered = Boolean(state.project || state.status);
    if (page.total === 0) {
      this.#content.hidden = true;
      this.#pager.hidden = true;
      this.#empty(filtered);
      return;
    }
    this.#emptyPanel?.remove();
    this.#content.hidden = false;
    this.#pager.hidden = page.total <= PAGE_SIZE && state.page === 1;
    for (const [sort, { th, arrow }] of this.#headers) {
      if (sort === state.sort) {
        th.setAttribute('aria-sort', state.order === 'asc' ? 'ascending' : 'descending');
        arrow.textContent = state.order === 'asc' ? ' ▲' : ' ▼';
      } else {
        th.removeAttribute('aria-sort');
        arrow.textContent = '';
      }
    }
    const column = COLUMNS.find((c) => c.sort === state.sort).label.toLowerCase();
    this.#caption.textContent = `Sessions sorted by ${column}, ${state.order === 'asc' ? 'ascending' : 'descending'}`;
    reconcile(this.#body, page.sessions, (item) => item.id, sessionRow);
    const first = page.offset + 1;
    const last = page.offset + page.sessions.length;
    this.#range.textContent = `${count(first)}–${count(last)} of ${count(page.total)} · page ${count(state.page)} of ${count(lastPage)}`;
    this.#prev.disabled = state.page <= 1;
    this.#next.disabled = state.page >= lastPage;
  }

  #empty(filtered) {
    this.#emptyPanel?.remove();
    this.#emptyPanel = filtered
      ? emptyState('No sessions match these filters', el('p', {}, el('button', { type: 'button', on: { click: () => this.#go({ project: '', status: '', page: 1 }) } }, 'Clear filters')))
      : noSessionsYet();
    this.#content.after(this.#emptyPanel);
  }

  #renderProjects(projects) {
    const names = projects.map((p) => p.project);
    if (this.#state.project && !names.includes(this.#state.project)) {
      projects = [...projects, { project: this.#state.project, sessions: 0 }];
    }
    const key = JSON.stringify(projects);
    if (key === this.#projectsKey) return;
    this.#projectsKey = key;
    // Rebuilt only when the set changed, so an open or focused select is left alone by live refreshes.
    this.#project.replaceChildren(
      el('option', { value: '', text: 'All projects' }),
      ...projects.map((p) => el('option', { value: p.project, text: `${projectName(p.project)} (${count(p.sessions)})` })),
    );
    this.#project.value = this.#state.project;
  }

  #syncControls() {
    if (![...this.#project.options].some((o) => o.value === this.#state.project)) {
      this.#project.append(el('option', { value: this.#state.project, text: projectName(this.#state.project) }));
    }
    this.#project.value = this.#state.project;
    this.#status.value = this.#state.status;
    this.#clear.disabled = !this.#state.project && !this.#state.status;
  }

  #sortBy(sort) {
    const s = this.#state;
    const order = s.sort === sort ? (s.order === 'asc' ? 'desc' : 'asc') : SORTS[sort];
    this.#go({ sort, order, page: 1 });
  }

  #go(change, replaceHistory = false) {
    this.#ctx.navigate(hashFor({ ...this.#state, ...change }), { replace: replaceHistory });
  }
}
