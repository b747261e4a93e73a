// The activities (/activities): scale-outs and scale-ins, newest first,
// from GET /v1/activities?order=desc, those Nomad's own count changes
// started included. The filter (service, business unit, direction,
// outcome, time range) lives in the address, so a link shares the view;
// "Show older" pages back with the API's cursor.

import { useMemo, useState } from 'preact/hooks';
import type { ActivitiesPage, Activity } from '../api';
import { errorText, request } from '../api';
import { Empty, ErrorNote, Link } from '../components';
import { dateTime, span } from '../format';
import { useApi } from '../load';
import { activityHref, navigate, PAGES, search } from '../router';
import { onApiError, token } from '../store';

/** The filter's fields, as in the address. */
const FIELDS = ['service', 'business_unit', 'direction', 'outcome', 'range', 'since', 'until'] as const;

/** Time ranges, as in the address, and their length. */
export const RANGES: Record<string, { text: string; ms: number }> = {
  '15m': { text: 'Last 15 minutes', ms: 15 * 60_000 },
  '1h': { text: 'Last hour', ms: 3_600_000 },
  '24h': { text: 'Last 24 hours', ms: 86_400_000 },
  '7d': { text: 'Last 7 days', ms: 7 * 86_400_000 },
};

export const OUTCOME_WORDS: Record<string, string> = {
  done: 'Done',
  partial: 'Partial',
  unmet: 'Unmet',
  failed: 'Failed',
  missed_deadline: 'Missed its deadline',
  in_progress: 'In progress',
};

const STARTED_BY: Record<string, string> = { policy: 'a policy', manual: 'by hand', nomad: 'a count changed in Nomad' };

/** The API's query for a filter: its fields, with a range turned into since. */
export function apiQuery(params: URLSearchParams, extra: Record<string, string> = {}): string {
  const q = new URLSearchParams();
  for (const f of FIELDS) {
    const v = params.get(f);
    if (!v || f === 'range') continue;
    q.set(f, v);
  }
  const r = RANGES[params.get('range') ?? ''];
  if (r && !q.has('since')) q.set('since', new Date(Date.now() - r.ms).toISOString().replace(/\.\d+Z$/, 'Z'));
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return q.toString();
}

/** An activity's outcome in words. */
export function outcomeText(a: Activity): string {
  const o = a.outcome ? OUTCOME_WORDS[a.outcome] ?? a.outcome : 'In progress';
  return a.missed_deadline ? `${o}, missed its deadline` : o;
}

function Row(props: { a: Activity }) {
  const { a } = props;
  const took = a.outcome ? new Date(a.updated).getTime() - new Date(a.triggered ?? a.started).getTime() : null;
  return (
    <tr data-activity={a.id} data-outcome={a.outcome ?? 'in_progress'} data-direction={a.direction}>
      <td>{dateTime(a.triggered ?? a.started)}</td>
      <th scope="row">
        <Link href={activityHref(a.id)}>
          {a.direction === 'down' ? 'Scale-in' : 'Scale-out'} of {a.service}
        </Link>
      </th>
      <td>{a.business_unit ?? '—'}</td>
      <td>
        {a.from} → {a.to}
      </td>
      <td data-field="outcome">
        {outcomeText(a)}
        {took !== null && took > 0 ? <span class="muted"> after {span(took)}</span> : null}
      </td>
      <td>{STARTED_BY[a.started_by] ?? a.actor}</td>
    </tr>
  );
}

export function Activities() {
  const params = new URLSearchParams(search.value);
  // The API query is fixed when the filter changes, so a range's start
  // does not move with every reload.
  const query = useMemo(() => apiQuery(params, { order: 'desc', limit: '50' }), [search.value]);
  const first = useApi<ActivitiesPage>('/v1/activities?' + query);
  const [older, setOlder] = useState<{ query: string; items: Activity[]; next?: string; error?: unknown }>({ query: '', items: [] });
  const more = older.query === query ? older : { query, items: [] as Activity[], next: undefined, error: undefined };
  const next = more.items.length ? more.next : first.data?.next;

  const showOlder = () => {
    const tok = token.peek();
    if (!tok || !next) return;
    request<ActivitiesPage>(`/v1/activities?${query}&cursor=${encodeURIComponent(next)}`, tok).then(
      (p) => setOlder({ query, items: [...more.items, ...p.activities], next: p.next }),
      (err: unknown) => {
        onApiError(err);
        setOlder({ ...more, error: err });
      },
    );
  };
  const onSubmit = (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const q = new URLSearchParams();
    for (const f of FIELDS) {
      const v = String(form.get(f) ?? params.get(f) ?? '').trim();
      if (v) q.set(f, v);
    }
    navigate(PAGES.activities + (q.toString() ? '?' + q.toString() : ''));
  };
  const seen = new Set<string>();
  const rows = [...(first.data?.activities ?? []), ...more.items].filter((a) => !seen.has(a.id) && seen.add(a.id));
  return (
    <div data-testid="activities">
      <h1>Activities</h1>
      <form class="filters" role="search" aria-label="Filter the activities" onSubmit={onSubmit} key={search.value}>
        <div class="field">
          <label for="f-service">Service</label>
          <input id="f-service" name="service" placeholder="namespace/job/group" defaultValue={params.get('service') ?? ''} />
        </div>
        <div class="field">
          <label for="f-bu">Business unit</label>
          <input id="f-bu" name="business_unit" defaultValue={params.get('business_unit') ?? ''} />
        </div>
        <div class="field">
          <label for="f-direction">Direction</label>
          <select id="f-direction" name="direction">
            <option value="">Both</option>
            <option value="up" selected={params.get('direction') === 'up'}>
              Scale-outs
            </option>
            <option value="down" selected={params.get('direction') === 'down'}>
              Scale-ins
            </option>
          </select>
        </div>
        <div class="field">
          <label for="f-outcome">Outcome</label>
          <select id="f-outcome" name="outcome">
            <option value="">Any</option>
            {Object.entries(OUTCOME_WORDS).map(([v, t]) => (
              <option key={v} value={v} selected={params.get('outcome') === v}>
                {t}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="f-range">Time</label>
          <select id="f-range" name="range">
            <option value="">Any time</option>
            {Object.entries(RANGES).map(([v, r]) => (
              <option key={v} value={v} selected={params.get('range') === v}>
                {r.text}
              </option>
            ))}
          </select>
        </div>
        <div class="actions">
          <button type="submit">Filter</button>
          <Link href={PAGES.activities}>Clear</Link>
        </div>
      </form>
      {first.error ? (
        <ErrorNote>
          <p>Could not load the activities: {errorText(first.error)}</p>
          <button type="button" onClick={first.retry}>
            Try again
          </button>
        </ErrorNote>
      ) : null}
      {first.data === null && !first.error ? <p class="muted">Loading the activities…</p> : null}
      {first.data !== null && rows.length === 0 ? <Empty>No activity matches this filter.</Empty> : null}
      {rows.length ? (
        <table data-testid="activity-list">
          <caption>Activities, newest first ({rows.length} shown)</caption>
          <thead>
            <tr>
              <th scope="col">Started</th>
              <th scope="col">Activity</th>
              <th scope="col">Business unit</th>
              <th scope="col">Count</th>
              <th scope="col">Outcome</th>
              <th scope="col">Started by</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((a) => (
              <Row key={a.id} a={a} />
            ))}
          </tbody>
        </table>
      ) : null}
      {more.error ? <ErrorNote>Could not load older activities: {errorText(more.error)}</ErrorNote> : null}
      {next ? (
        <p>
          <button type="button" class="secondary" onClick={showOlder}>
            Show older activities
          </button>
        </p>
      ) : null}
    </div>
  );
}
