// The live connection: follows memtray's /stream with EventSource and hands each event on. When the
// stream breaks (memtray stopped or restarting) it reports the loss once, then reconnects by itself with a
// growing delay, and reports the reconnection so the page can refetch what it missed.

/** Every event name /stream sends. */
export const EVENT_NAMES = [
  'processing_status',
  'session_started',
  'observation_queued',
  'new_observation',
  'summary_queued',
  'new_summary',
  'message_failed',
  'message_retried',
  'message_aborted',
  'session_completed',
  'session_deleted',
];

/** The session an event is about, if any. */
export function sessionOf(data) {
  return data?.session_id ?? data?.observation?.session_id ?? data?.summary?.session_id;
}

const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 5000;

export class Live {
  #url;
  #handlers;
  #source = null;
  #timer = null;
  #delay = FIRST_DELAY_MS;
  #lost = false;
  #opened = false;

  /**
   * `handlers.event(name, data)` for each event, `handlers.open(reconnected)` when the stream (re)opens,
   * `handlers.lost()` once when it breaks.
   */
  constructor(url, handlers) {
    this.#url = url;
    this.#handlers = handlers;
  }

  start() {
    this.#connect();
  }

  #connect() {
    this.#timer = null;
    const source = new EventSource(this.#url);
    this.#source = source;
    source.addEventListener('open', () => {
      if (source !== this.#source) return;
      const reconnected = this.#lost || this.#opened;
      this.#opened = true;
      this.#lost = false;
      this.#delay = FIRST_DELAY_MS;
      this.#handlers.open(reconnected);
    });
    source.addEventListener('error', () => {
      if (source !== this.#source) return;
      // EventSource would retry on its own after a dropped connection, but gives up for good on some
      // failures (a non-200 answer); closing and reopening ourselves covers both with one backoff.
      source.close();
      this.#source = null;
      if (!this.#lost) {
        this.#lost = true;
        this.#handlers.lost();
      }
      const jitter = Math.random() * 0.2 * this.#delay;
      this.#timer = setTimeout(() => this.#connect(), this.#delay + jitter);
      this.#delay = Math.min(this.#delay * 2, MAX_DELAY_MS);
    });
    for (const name of EVENT_NAMES) {
      source.addEventListener(name, (message) => {
        if (source !== this.#source) return;
        let data = null;
        try {
          data = JSON.parse(message.data);
        } catch {
          return;
        }
        this.#handlers.event(name, data);
      });
    }
  }
}
