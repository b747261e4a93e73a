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

/** One open loan of GET /v1/pools/loans: a lent (or rented) host. */
export interface Loan {
  /** The Nomad node's ID. */
  host: string;
  host_name?: string;
  /** shared for a lent host; warm or cold for a rented one. */
  tier: string;
  pool: string;
  lender: string;
  borrower: string;
  claim?: string;
  since: string;
  /** When the lease ends. */
  until: string;
  overcommit?: boolean;
  /** Set once the owner reclaimed the host: it is back by then. */
  reclaim_by?: string;
  /** Why a loan Nomad showed and the ledger did not record was adopted. */
  adopted?: string;
}

/** A loan that ended, with why: returned, lease expired or reclaimed. */
export interface ClosedLoan extends Pick<Loan, 'host' | 'host_name' | 'tier' | 'pool' | 'lender' | 'borrower' | 'since' | 'until'> {
  returned: string;
  reason: string;
}

/** GET /v1/pools/loans */
export interface LoansPage {
  /** The control plane's time of the answer. */
  at: string;
  /** The shared pool's lease terms; absent without a shared pool. */
  shared?: { pool: string; lease_seconds: number; reclaim_notice_seconds: number; drain_deadline_seconds: number };
  loans: Loan[];
  /** With closed_since: the loans closed since then, in return order. */
  closed?: ClosedLoan[];
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
  data?: Record<string, unknown>;
}

/** One tier of GET /v1/overview: a pool's capacity with its limits. */
export interface OverviewTier extends PoolCapacity {
  limits: { max_hosts?: number; budget_per_hour?: number; quota?: number };
  time_to_ready_seconds?: number;
}

export interface OverviewPhase {
  phase: string;
  time: string;
  /** Since the phase before it. */
  seconds: number;
}

export interface ScaleOut {
  activity: string;
  service: string;
  started_by: 'policy' | 'nomad';
  business_unit?: string;
  triggered: string;
  deadline: string;
  phases: OverviewPhase[];
  pools: string[];
  projected_finish?: string;
  critical_phase?: string;
  outcome: 'in_progress' | 'done' | 'partial' | 'unmet' | 'failed';
  outcome_reason?: string;
  ended?: string;
  missed_deadline: boolean;
}

export interface ServiceDemand {
  service: string;
  policy?: string;
  business_unit?: string;
  wanted: number;
  running: number;
  starting: number;
  queued: number;
}

/** GET /v1/overview */
export interface Overview {
  at: string;
  last_seq: number;
  cluster: { live: boolean; since?: string; as_of?: string; error?: string };
  problems: string[];
  tiers: OverviewTier[];
  cost: {
    per_hour: number;
    per_hour_by_tier: Record<string, number>;
    currency?: string;
    burst?: { since: string; hosts: number; cost_so_far: number };
  };
  demand: ServiceDemand[];
  scale_outs: ScaleOut[];
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

/** One journal event of an activity, as GET /v1/activities lists them. */
export interface ActivityPhase {
  seq: number;
  kind: string;
  time: string;
  actor?: string;
  message: string;
}

/** GET /v1/activities: one scaling operation. */
export interface Activity {
  id: string;
  service: string;
  direction: 'up' | 'down' | string;
  from: number;
  to: number;
  status: string;
  /** How it ended, once it has; absent in flight. */
  outcome?: 'done' | 'partial' | 'unmet' | 'failed';
  missed_deadline: boolean;
  business_unit?: string;
  policy?: string;
  started_by: 'policy' | 'manual' | 'nomad' | '';
  actor: string;
  reason: string;
  started: string;
  updated: string;
  hosts: string[];
  phases: ActivityPhase[];
  seq: number;
  triggered?: string;
  deadline?: string;
}

export interface ActivitiesPage {
  activities: Activity[];
  next?: string;
}

/** One host of an activity, from requested to serving. */
export interface HostTimeline {
  host: string;
  pool: string;
  tier: string;
  claim?: string;
  offering?: string;
  node?: string;
  requested: string;
  running?: string;
  ready?: string;
  placed?: string;
  serving?: string;
  ended?: string;
}

/** One line of the source waterfall. */
export interface SourceStep {
  seq: number;
  time: string;
  tier?: string;
  pool: string;
  offerings?: string[];
  result: 'used' | 'skipped' | 'hedged' | 'unmet';
  asked?: number;
  hosts: number;
  reason?: string;
  error?: string;
  seconds?: number;
}

/** GET /v1/activities/{id} */
export interface ActivityDetail extends Activity {
  trigger: { by: 'alert' | 'policy_check' | 'manual' | 'nomad' | ''; time: string; text: string; alerts?: string[]; policy?: string };
  decision?: JournalEvent;
  scale_out?: ScaleOut;
  host_timelines: HostTimeline[];
  sources: SourceStep[];
}

/** GET /v1/events */
export interface EventsPage {
  events: JournalEvent[];
  next?: string;
}
