// The API client: the shapes of the /v1 answers the console reads (see
// controlplane/app/openapi.yaml), and one fetch wrapper that sends the
// token in the Authorization header and turns the API's error body into
// an ApiError. The token never goes into a URL.

export type Role = 'viewer' | 'operator' | 'admin';

/** GET /v1/whoami */
export interface WhoAmI {
  name: string;
  role: Role;
}

export interface Resources {
  total: number;
  used: number;
  free: number;
}

export interface PoolPause {
  by?: string;
  reason?: string;
  since?: string;
}

/** One pool of GET /v1/pools. */
export interface PoolCapacity {
  pool: string;
  /** own, shared, warm or cold */
  tier: string;
  hosts: { total: number; free: number; in_use: number; borrowed: number };
  cpu_mhz: Resources;
  memory_mb: Resources;
  cost_per_hour: number;
  currency?: string;
  /** Set while Spillway takes no hosts from the pool. */
  paused?: PoolPause;
}

/** GET /v1/pools */
export interface CapacityReport {
  at: string;
  pools: PoolCapacity[];
}

/** One event of the journal, as GET /v1/events/stream sends it. */
export interface JournalEvent {
  seq: number;
  time: string;
  kind: string;
  subject?: string;
  activity?: string;
  actor?: string;
  message: string;
}

/** An error the API answered with, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public details: string[] = [],
  ) {
    super(message);
  }
}

/** The words to show a person for an error. */
export function errorText(err: unknown): string {
  if (err instanceof ApiError) {
    const d = err.details.length ? ': ' + err.details.join('; ') : '';
    return err.message + d;
  }
  return err instanceof Error ? err.message : String(err);
}

export interface RequestOptions {
  method?: 'GET' | 'POST';
  body?: unknown;
  signal?: AbortSignal;
}

/** Calls the API with token and returns its JSON answer; throws an ApiError. */
export async function request<T>(path: string, token: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json', Authorization: 'Bearer ' + token };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, {
      method: opts.method ?? 'GET',
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'The control plane could not be reached (' + errorText(err) + ')');
  }
  const text = await res.text();
  let body: unknown = undefined;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
  }
  if (!res.ok) {
    const e = (body as { error?: { code?: string; message?: string; details?: string[] } } | undefined)?.error;
    throw new ApiError(
      res.status,
      e?.code ?? 'http_' + res.status,
      e?.message ?? `The control plane answered ${res.status} ${res.statusText}`.trim(),
      e?.details ?? [],
    );
  }
  return body as T;
}
