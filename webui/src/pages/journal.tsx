// The journal (/journal): what Spillway saw, decided and did, newest
// first, from GET /v1/events?order=desc. Search by text, kind, actor,
// service, host, activity and time range (in the address, so a link
// shares the view); a live tail (the page reloads its first page as the
// event stream brings events); "Show older" pages back. Every ID is a
// link: an alert's fingerprint, a decision's activity, the activity, a
// host (its events: claims, loans, returns).

import { useMemo, useState } from 'preact/hooks';
import type { EventsPage, JournalEvent } from '../api';
import { errorText, request } from '../api';
import { Empty, ErrorNote, Link } from '../components';
import { dateTime } from '../format';
import { useApi } from '../load';
import { activityHref, journalHref, navigate, PAGES, search } from '../router';
import { onApiError, token } from '../store';
import { RANGES } from './activities';

const FIELDS = ['text', 'kind', 'actor', 'service', 'host', 'activity', 'range', 'since', 'until'] as const;
const LABELS: Record<string, string> = {
  text: 'Text',
  kind: 'Kind (or its start, like capacity)',
  actor: 'Actor',
  service: 'Service',
  host: 'Host',
  activity: 'Activity',
};

function apiQuery(params: URLSearchParams): string {
  const q = new URLSearchParams({ order: 'desc', limit: '100' });
  for (const f of FIELDS) {
    const v = params.get(f);
    if (v && f !== 'range') q.set(f, v);
  }
  const r = RANGES[params.get('range') ?? ''];
  if (r && !q.has('since')) q.set('since', new Date(Date.now() - r.ms).toISOString().replace(/\.\d+Z$/, 'Z'));
  return q.toString();
}

/** Host IDs in an event's data: host, hosts (a cloud host as "i-… (offering)"). */
function hostsOf(ev: JournalEvent): string[] {
  const d = ev.data ?? {};
  const out: string[] = [];
  if (typeof d.host === 'string' && d.host) out.push(d.host);
  if (Array.isArray(d.hosts)) for (const h of d.hosts) if (typeof h === 'string' && h) out.push(h.split(' (')[0]);
  if (ev.subject?.startsWith('host/')) out.push(ev.subject.slice(5));
  return [...new Set(out)];
}

/** Alert fingerprints in an event's data. */
function alertsOf(ev: JournalEvent): string[] {
  const d = ev.data ?? {};
  const out: string[] = [];
  if (typeof d.fingerprint === 'string' && d.fingerprint) out.push(d.fingerprint);
  if (Array.isArray(d.alerts)) for (const a of d.alerts) if (typeof a === 'string') out.push(a);
  return out;
}

function EventRow(props: { ev: JournalEvent }) {
  const { ev } = props;
  const hosts = hostsOf(ev);
  const alerts = alertsOf(ev);
  const svc = ev.subject && !ev.subject.startsWith('host/') && ev.subject.split('/').length === 3 ? ev.subject : null;
  const claim = typeof ev.data?.claim === 'string' ? (ev.data.claim as string) : null;
  return (
    <tr data-seq={ev.seq} data-kind={ev.kind} data-activity={ev.activity ?? ''}>
      <td>{dateTime(ev.time)}</td>
      <td>
        <Link href={journalHref({ kind: ev.kind })}>{ev.kind}</Link>
      </td>
      <td class="message">
        {ev.message}
        <ul class="links">
          {ev.activity ? (
            <li>
              {ev.kind === 'decision' ? 'decision of ' : ''}activity <Link href={activityHref(ev.activity)}>{ev.activity}</Link>
            </li>
          ) : null}
          {svc ? (
            <li>
              service <Link href={journalHref({ service: svc })}>{svc}</Link>
            </li>
          ) : !ev.subject || ev.subject.startsWith('host/') ? null : (
            <li>about {ev.subject}</li>
          )}
          {hosts.map((h) => (
            <li key={'h' + h}>
              host <Link href={journalHref({ host: h })}>{h}</Link>
            </li>
          ))}
          {claim ? (
            <li>
              claim <Link href={journalHref({ text: claim })}>{claim}</Link>
            </li>
          ) : null}
          {alerts.map((a) => (
            <li key={'a' + a}>
              alert <Link href={journalHref({ text: a })}>{a}</Link>
            </li>
          ))}
        </ul>
      </td>
      <td>{ev.actor ? <Link href={journalHref({ actor: ev.actor })}>{ev.actor}</Link> : '—'}</td>
    </tr>
  );
}

export function Journal() {
  const params = new URLSearchParams(search.value);
  const query = useMemo(() => apiQuery(params), [search.value]);
  const [tail, setTail] = useState(true);
  const first = useApi<EventsPage>('/v1/events?' + query, tail);
  const [older, setOlder] = useState<{ query: string; items: JournalEvent[]; next?: string; error?: unknown }>({ query: '', items: [] });
  const more = older.query === query ? older : { query, items: [] as JournalEvent[], next: undefined, error: undefined };
  const next = more.items.length ? more.next : first.data?.next;
  const showOlder = () => {
    const tok = token.peek();
    if (!tok || !next) return;
    request<EventsPage>(`/v1/events?${query}&cursor=${encodeURIComponent(next)}`, tok).then(
      (p) => setOlder({ query, items: [...more.items, ...p.events], next: p.next }),
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
    navigate(PAGES.journal + (q.toString() ? '?' + q.toString() : ''));
  };
  const seen = new Set<number>();
  const rows = [...(first.data?.events ?? []), ...more.items].filter((e) => !seen.has(e.seq) && seen.add(e.seq));
  return (
    <div data-testid="journal">
      <h1>Journal</h1>
      <form class="filters" role="search" aria-label="Search the journal" onSubmit={onSubmit} key={search.value}>
        {Object.entries(LABELS).map(([f, label]) => (
          <div class="field" key={f}>
            <label for={'j-' + f}>{label}</label>
            <input id={'j-' + f} name={f} defaultValue={params.get(f) ?? ''} />
          </div>
        ))}
        <div class="field">
          <label for="j-range">Time</label>
          <select id="j-range" name="range">
            <option value="">Any time</option>
            {Object.entries(RANGES).map(([v, r]) => (
              <option key={v} value={v} selected={params.get('range') === v}>
                {r.text}
              </option>
            ))}
          </select>
        </div>
        <div class="actions">
          <button type="submit">Search</button>
          <Link href={PAGES.journal}>Clear</Link>
        </div>
      </form>
      <p>
        <label class="check">
          <input type="checkbox" checked={tail} onChange={(e) => setTail((e.currentTarget as HTMLInputElement).checked)} /> Live: show new
          events as they are journaled
        </label>
      </p>
      {first.error ? (
        <ErrorNote>
          <p>Could not load the journal: {errorText(first.error)}</p>
          <button type="button" onClick={first.retry}>
            Try again
          </button>
        </ErrorNote>
      ) : null}
      {first.data === null && !first.error ? <p class="muted">Loading the journal…</p> : null}
      {first.data !== null && rows.length === 0 ? <Empty>No event matches this search.</Empty> : null}
      {rows.length ? (
        <table data-testid="event-list">
          <caption>Events, newest first ({rows.length} shown)</caption>
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Kind</th>
              <th scope="col">What happened</th>
              <th scope="col">Actor</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((ev) => (
              <EventRow key={ev.seq} ev={ev} />
            ))}
          </tbody>
        </table>
      ) : null}
      {more.error ? <ErrorNote>Could not load older events: {errorText(more.error)}</ErrorNote> : null}
      {next ? (
        <p>
          <button type="button" class="secondary" onClick={showOlder}>
            Show older events
          </button>
        </p>
      ) : null}
    </div>
  );
}
