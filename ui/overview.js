// The overview: whether memtray is processing, active sessions, queue depth, pending / processing / stuck /
// failed counts, messages processed in the last hour, and the most recently active sessions. The counts
// follow the stream's processing_status directly; /api/stats (the only source of the hourly figure, and a
// heavier query) is fetched on load and then at most every 5 seconds while events flow. The provider's health
// (a refused key, an open circuit, the daily token ceiling) comes with the status; what providers cost (tokens
// per day, project and provider) with /api/stats.

import { get } from './api.js';
import { count, el, reconcile } from './dom.js';
import { noSessionsYet, sessionRow } from './sessions.js';

const STATS_EVERY_MS = 5000;
const RECENT = 5;

/** The figures shown, in order: status field, label, and whether a non-zero value needs attention. */
const METRICS = [
  ['state', 'Status'],
  ['activeSessions', 'Active sessions'],
  ['queueDepth', 'Queue depth'],
  ['pending', 'Pending'],
  ['processing', 'Processing now'],
  ['stuck', 'Stuck', true],
  ['failed', 'Failed', true],
  ['processedLastHour', 'Processed in the last hour'],
  ['provider', 'Provider'],
  ['tokensToday', 'Tokens today'],
];

/** What a provider's health is called on screen. */
const HEALTH = {
  ok: 'OK',
  misconfigured: 'Refuses its configuration',
  circuitOpen: 'Resting after failures',
  rateLimited: 'Rate limited',
  overBudget: 'Token ceiling reached',
};

export class OverviewView {
  name = 'overview';
  title = 'Overview';
  interval = 400;
  #ctx;
  #values = new Map();
  #stats = null;
  #statsAt = -Infinity;
  #statsTimer = null;
  #recent;
  #table;
  #rows;
  #all;
  #empty = null;
  #attention;
  #providerNote;
  #tokens;
  #team;

  constructor(ctx) {
    this.#ctx = ctx;
    const cards = el(
      'dl',
      { class: 'cards' },
      METRICS.map(([key, label, alarm]) => {
        const value = el('dd', { class: 'card-value', text: '…' });
        const card = el('div', { class: 'card', dataset: { metric: key } }, el('dt', { text: label }), value);
        this.#values.set(key, { card, value, alarm });
        return card;
      }),
    );
    this.#attention = el('p', { class: 'attention', hidden: true });
    this.#providerNote = el('p', { class: 'attention provider-health', role: 'status', hidden: true });
    this.#tokens = el('div', { class: 'tokens' });
    this.#team = el('p', { class: 'team-link', id: 'team-link', hidden: true });
    this.#rows = el('tbody');
    this.#all = el('a', { href: '#/sessions' });
    this.#table = el(
      'div',
      { class: 'recent', hidden: true },
      el(
        'div',
        { class: 'table-wrap' },
        el(
          'table',
          { class: 'data sessions' },
          el('caption', { class: 'visually-hidden', text: 'The most recently active sessions' }),
          el('thead', {}, el('tr', {}, ['Project', 'Session', 'Status', 'Started', 'Prompts', 'Queue', 'Last activity'].map((h) => el('th', { scope: 'col', class: h === 'Prompts' ? 'num' : null, text: h })))),
          this.#rows,
        ),
      ),
      el('p', {}, this.#all),
    );
    this.#recent = el('div', {}, this.#table);
    this.root = el(
      'section',
      { class: 'view', 'aria-labelledby': 'overview-title' },
      el('h1', { id: 'overview-title', text: 'Overview' }),
      cards,
      this.#providerNote,
      this.#attention,
      this.#team,
      el('h2', { text: 'Recently active sessions' }),
      this.#recent,
      el('h2', { text: 'Tokens spent by providers' }),
      this.#tokens,
    );
  }

  accepts(route) {
    return route.name === 'overview';
  }

  setRoute() {}

  /** The counts come with processing_status itself; everything else may change what is recent. */
  wants(name) {
    return name !== 'processing_status';
  }

  onStatus(status) {
    if (!this.#stats) return;
    this.#stats = { ...this.#stats, ...status };
    this.#showStats();
    this.#statsSoon();
  }

  async load(signal) {
    const due = performance.now() - this.#statsAt >= STATS_EVERY_MS;
    const [stats, recent, team] = await Promise.all([
      due || !this.#stats ? get('/api/stats', {}, signal) : null,
      get('/api/sessions', { limit: RECENT }, signal),
      get('/api/team', {}, signal),
    ]);
    if (stats) this.#statsAt = performance.now();
    return { stats, recent, team };
  }

  render({ stats, recent, team }) {
    if (stats) this.#stats = stats;
    this.#showStats();
    this.#showTeam(team);
    if (recent.total === 0) {
      this.#table.hidden = true;
      this.#empty ??= this.#recent.appendChild(noSessionsYet());
      return;
    }
    this.#empty?.remove();
    this.#empty = null;
    this.#table.hidden = false;
    reconcile(this.#rows, recent.sessions, (item) => item.id, sessionRow);
    this.#all.textContent = `All ${count(recent.total)} sessions →`;
  }

  destroy() {
    clearTimeout(this.#statsTimer);
  }

  /** The hourly figure only comes from /api/stats: refresh it once the 5 s spacing allows. */
  #statsSoon() {
    if (this.#statsTimer !== null) return;
    const wait = Math.max(0, this.#statsAt + STATS_EVERY_MS - performance.now());
    this.#statsTimer = setTimeout(() => {
      this.#statsTimer = null;
      this.#ctx.request();
    }, wait);
  }

  /** The team link: connected, pushing N, behind by N, or unreachable since when; hidden without [team]. */
  #showTeam(team) {
    this.#team.hidden = !team.enabled;
    if (!team.enabled) return;
    const link = team.unreachableSince
      ? `unreachable since ${new Date(team.unreachableSince).toLocaleString()}`
      : team.connected
        ? 'connected'
        : `not connected${team.lastError ? ` (${team.lastError})` : ''}`;
    this.#team.dataset.state = team.unreachableSince ? 'unreachable' : team.connected ? 'connected' : 'refused';
    this.#team.textContent = `Team ${team.url}${team.member ? ` as ${team.member}` : ''}: ${link}; pushing ${count(team.pushing)}, behind by ${count(team.behind)}.`;
  }

  #showStats() {
    const s = this.#stats;
    for (const [key, { card, value, alarm }] of this.#values) {
      if (key === 'state') {
        value.textContent = s.paused ? 'Paused' : s.isProcessing ? 'Processing' : 'Idle';
        card.dataset.state = s.paused ? 'paused' : s.isProcessing ? 'busy' : 'idle';
        continue;
      }
      if (key === 'provider') {
        const p = s.provider ?? {};
        value.textContent = `${p.name ?? '…'} · ${HEALTH[p.health] ?? p.health ?? ''}`;
        card.dataset.health = p.health ?? 'ok';
        card.classList.toggle('alarm', p.health === 'misconfigured' || p.health === 'circuitOpen');
        continue;
      }
      if (key === 'tokensToday') {
        const p = s.provider ?? {};
        const ceiling = p.maxTokensPerDay ? ` of ${count(p.maxTokensPerDay)}` : '';
        value.textContent = `${count(p.tokensToday ?? 0)}${ceiling}`;
        continue;
      }
      const n = s[key] ?? 0;
      value.textContent = count(n);
      card.classList.toggle('alarm', Boolean(alarm) && n > 0);
    }
    const p = s.provider ?? {};
    this.#providerNote.hidden = !p.health || p.health === 'ok';
    if (!this.#providerNote.hidden) {
      const until = p.until && p.health !== 'misconfigured' ? ` Next try ${new Date(p.until).toLocaleTimeString()}.` : '';
      this.#providerNote.textContent = `Provider ${p.name}: ${p.reason ?? HEALTH[p.health] ?? p.health}.${until}`;
    }
    if (s.tokens) this.#tokens.replaceChildren(...tokenTables(s.tokens));
    const trouble = (s.stuck ?? 0) + (s.failed ?? 0);
    this.#attention.hidden = trouble === 0;
    if (trouble > 0) {
      const parts = [];
      if (s.stuck) parts.push(`${count(s.stuck)} stuck`);
      if (s.failed) parts.push(`${count(s.failed)} failed`);
      this.#attention.replaceChildren(
        `${parts.join(' and ')} ${trouble === 1 ? 'message needs' : 'messages need'} a look. `,
        el('a', { href: '#/queue', text: 'Open the queue →' }),
      );
    }
  }
}

/** Token figures as three small tables: per day, per project, per provider. */
function tokenTables(tokens) {
  const groups = [
    ['Per day (UTC)', tokens.byDay ?? []],
    ['Per project', tokens.byProject ?? []],
    ['Per provider', tokens.byProvider ?? []],
  ];
  if (groups.every(([, rows]) => rows.length === 0)) {
    return [el('p', { class: 'muted', text: 'No provider has spent tokens in the last 30 days.' })];
  }
  return groups.map(([caption, rows]) =>
    el(
      'table',
      { class: 'data tokens-table', dataset: { group: caption } },
      el('caption', { text: caption }),
      el('thead', {}, el('tr', {}, ['', 'Calls', 'Messages', 'Input', 'Output'].map((h) => el('th', { scope: 'col', class: h ? 'num' : null, text: h })))),
      el(
        'tbody',
        {},
        rows.map((r) =>
          el(
            'tr',
            {},
            el('th', { scope: 'row', text: r.key || '(none)' }),
            [r.calls, r.messages, r.inputTokens, r.outputTokens].map((n) => el('td', { class: 'num', text: count(n) })),
          ),
        ),
      ),
    ),
  );
}
