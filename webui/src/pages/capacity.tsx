// Capacity by tier (/capacity): from GET /v1/pools, each business unit's
// own hosts, the shared pool and each cloud pool, used against free, with
// every number in text. It reloads when a journal event arrives (and on a
// slow poll). Operators and admins can pause and resume taking hosts from
// the shared pool and the cloud pools; a viewer sees no such control.
// Below the shared pool, its loans (pages/loans.tsx): the lender's side.

import { useEffect, useId, useRef, useState } from 'preact/hooks';
import type { CapacityReport, PoolCapacity } from '../api';
import { ApiError, errorText, request } from '../api';
import { Empty, ErrorNote, NotLoaded } from '../components';
import { clock, hosts, int, money } from '../format';
import { bump, canWrite, dataAt, dataVersion, onApiError, token } from '../store';
import { Loans } from './loans';

interface Loaded {
  report: CapacityReport | null;
  error: unknown;
}

/** GET /v1/pools, again whenever the data version moves. */
function usePools(): Loaded & { retry: () => void } {
  const version = dataVersion.value;
  const [state, setState] = useState<Loaded>({ report: null, error: null });
  useEffect(() => {
    const tok = token.peek();
    if (!tok) return;
    const ctl = new AbortController();
    request<CapacityReport>('/v1/pools', tok, { signal: ctl.signal }).then(
      (report) => {
        if (ctl.signal.aborted) return;
        setState({ report, error: null });
        dataAt.value = Date.now();
      },
      (error: unknown) => {
        if (ctl.signal.aborted || (error instanceof DOMException && error.name === 'AbortError')) return;
        onApiError(error);
        setState((s) => ({ report: s.report, error }));
      },
    );
    return () => ctl.abort();
  }, [version]);
  return { ...state, retry: () => bump(0) };
}

const pct = (used: number, total: number) => (total > 0 ? Math.min(100, Math.round((used / total) * 100)) : 0);

/** A bar for the eye; the numbers beside it say the same in text. */
function Bar(props: { used: number; total: number }) {
  return (
    <div class="bar" aria-hidden="true">
      <div class="bar-fill" style={{ width: `${pct(props.used, props.total)}%` }} />
    </div>
  );
}

/** Operators' control: pause or resume taking hosts from a pool. */
function PauseControl(props: { p: PoolCapacity }) {
  const { p } = props;
  const paused = p.paused !== undefined;
  const verb = paused ? 'Resume' : 'Pause';
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const id = useId();
  const opener = useRef<HTMLButtonElement>(null);
  const field = useRef<HTMLInputElement>(null);
  useEffect(() => {
    if (open) field.current?.focus();
  }, [open]);
  const close = () => {
    setOpen(false);
    setError(null);
    setTimeout(() => opener.current?.focus(), 0);
  };
  if (!open) {
    return (
      <button type="button" class="secondary" data-write="pool-pause" ref={opener} onClick={() => setOpen(true)}>
        {verb} taking hosts<span class="visually-hidden"> from {p.pool}</span>
      </button>
    );
  }
  const submit = async (e: Event) => {
    e.preventDefault();
    const reason = field.current?.value.trim() ?? '';
    if (!reason) {
      setError('Say why: the reason goes into the journal.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await request(`/v1/pools/${encodeURIComponent(p.pool)}/${paused ? 'resume' : 'pause'}`, token.peek() ?? '', {
        method: 'POST',
        body: { reason },
      });
      setOpen(false);
      bump(0);
    } catch (err) {
      onApiError(err);
      setError(err instanceof ApiError && err.status === 403 ? 'Your role may not do this.' : errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="pause-form" data-write="pool-pause-form" onSubmit={submit} onKeyDown={(e) => e.key === 'Escape' && close()}>
      <div class="field">
        <label for={id}>
          Why {paused ? 'resume' : 'pause'} {p.pool}?
        </label>
        <input id={id} ref={field} name="reason" type="text" maxLength={1024} aria-describedby={error ? id + '-error' : undefined} />
      </div>
      <div class="actions">
        <button type="submit" disabled={busy}>
          {busy ? 'Sending…' : `${verb} ${p.pool}`}
        </button>
        <button type="button" class="secondary" onClick={close}>
          Cancel
        </button>
      </div>
      {error ? (
        <p id={id + '-error'} class="error" role="alert">
          {error}
        </p>
      ) : null}
    </form>
  );
}

function PoolCard(props: { p: PoolCapacity }) {
  const { p } = props;
  const h = p.hosts;
  const id = useId();
  const cloud = p.tier === 'warm' || p.tier === 'cold';
  return (
    <article class="pool" data-pool={p.pool} data-tier={p.tier} aria-labelledby={id}>
      <h3 id={id}>{p.pool}</h3>
      <p class="hosts">
        <strong>
          <span data-field="hosts.in_use">{int(h.in_use)}</span> of <span data-field="hosts.total">{int(h.total)}</span>{' '}
          {hosts(h.total)} in use
        </strong>
        , <span data-field="hosts.free">{int(h.free)}</span> free
      </p>
      <Bar used={h.in_use} total={h.total} />
      {p.tier === 'own' ? (
        <p class="small">
          Borrowed from the shared pool: <span data-field="hosts.borrowed">{int(h.borrowed)}</span> {hosts(h.borrowed)}
        </p>
      ) : null}
      {p.tier === 'shared' ? (
        <p class="small">
          Lent to business units: <span data-field="hosts.borrowed">{int(h.borrowed)}</span> {hosts(h.borrowed)}
        </p>
      ) : null}
      <dl class="resources">
        <dt>CPU</dt>
        <dd>
          <span data-field="cpu_mhz.used">{int(p.cpu_mhz.used)}</span> of <span data-field="cpu_mhz.total">{int(p.cpu_mhz.total)}</span> MHz
          used, <span data-field="cpu_mhz.free">{int(p.cpu_mhz.free)}</span> free
        </dd>
        <dt>Memory</dt>
        <dd>
          <span data-field="memory_mb.used">{int(p.memory_mb.used)}</span> of{' '}
          <span data-field="memory_mb.total">{int(p.memory_mb.total)}</span> MB used,{' '}
          <span data-field="memory_mb.free">{int(p.memory_mb.free)}</span> free
        </dd>
        {cloud || p.tier === 'shared' ? (
          <>
            <dt>Cost</dt>
            <dd>
              <span data-field="cost_per_hour">{money(p.cost_per_hour)}</span> {p.currency ?? ''} per hour
            </dd>
          </>
        ) : null}
      </dl>
      {p.paused ? (
        <p class="paused" data-testid="paused">
          <strong>Paused:</strong> Spillway takes no hosts from this pool
          {p.paused.by ? ` (by ${p.paused.by}` : ' ('}
          {p.paused.since ? ` since ${clock(p.paused.since)}` : ''}
          {p.paused.reason ? `: ${p.paused.reason})` : ')'}.
        </p>
      ) : null}
      {p.tier !== 'own' && canWrite.value ? <PauseControl p={p} /> : null}
    </article>
  );
}

function Tier(props: { title: string; pools: PoolCapacity[]; empty: string; testid: string }) {
  const id = useId();
  return (
    <section class="tier" aria-labelledby={id} data-testid={props.testid}>
      <h2 id={id}>{props.title}</h2>
      {props.pools.length ? (
        <div class="pools">
          {props.pools.map((p) => (
            <PoolCard key={p.pool} p={p} />
          ))}
        </div>
      ) : (
        <Empty>{props.empty}</Empty>
      )}
    </section>
  );
}

export function Capacity() {
  const { report, error, retry } = usePools();
  let body;
  if (report === null) {
    body = <NotLoaded what="the pools' capacity" error={error} retry={retry} />;
  } else if (report.pools.length === 0) {
    body = (
      <Empty>
        No pools configured: this control plane has no pools directory (pools.dir), so it lends and rents no hosts.
      </Empty>
    );
  } else {
    const of = (...tiers: string[]) => report.pools.filter((p) => tiers.includes(p.tier));
    body = (
      <>
        {error ? (
          <ErrorNote>
            <p>
              Could not refresh: {errorText(error)}. Showing the capacity as of {clock(report.at)}.
            </p>
          </ErrorNote>
        ) : null}
        <Tier title="Business units' own hosts" testid="tier-own" pools={of('own')} empty="No business units configured." />
        <Tier title="Shared pool" testid="tier-shared" pools={of('shared')} empty="No shared pool configured." />
        {of('shared').length ? <Loans /> : null}
        <Tier title="Cloud pools" testid="tier-cloud" pools={of('warm', 'cold')} empty="No cloud pools configured." />
      </>
    );
  }
  return (
    <>
      <h1>Capacity by tier</h1>
      <p class="muted">
        Ready Nomad hosts in each pool, as the control plane counts them{report ? ` at ${clock(report.at)}` : ''}. A host is in use when it runs
        an allocation, and free when it runs none, is eligible and is not lent.
      </p>
      {body}
    </>
  );
}
