// The memtray JSON API as the inspector uses it: GET and POST with the server's {error: {code, message}}
// answers turned into ApiError, and network failures (server gone) told apart from refusals.

/** A failed call: `status` is the HTTP status (0 when the server could not be reached). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }

  /** True when memtray did not answer at all (stopped, restarting). */
  get unreachable() {
    return this.status === 0;
  }
}

async function call(method, path, { signal, body } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      signal,
      cache: 'no-store',
      headers: body === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'unreachable', 'memtray is not answering');
  }
  let data = null;
  try {
    data = await response.json();
  } catch (e) {
    if (e.name === 'AbortError') throw e;
  }
  if (!response.ok) {
    const error = data?.error ?? {};
    throw new ApiError(response.status, error.code ?? 'http_error', error.message ?? `HTTP ${response.status}`);
  }
  return data;
}

/** GET `path` with query parameters (empty values are left out). */
export function get(path, params = {}, signal) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') query.set(key, String(value));
  }
  const qs = query.toString();
  return call('GET', qs ? `${path}?${qs}` : path, { signal });
}

/** POST an (empty by default) JSON body. */
export function post(path, body = {}) {
  return call('POST', path, { body });
}
