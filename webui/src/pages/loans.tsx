// The lender's side on the capacity page: the shared pool's open loans
// (host, lender and borrower, since, the lease's end with its time left,
// marked within the reclaim notice or expired, reclaim-by once an owner
// reclaimed, adopted loans marked), each lender's count, and the loans
// closed in the last 24 hours with why, from GET /v1/pools/loans. It
// reloads when the journal moves (the data version). Operators and admins
// can extend a lease and reclaim a host, or a count of a lender's hosts,
// each in a dialog that asks why and shows the API's refusal in words; a
// viewer sees no such control.

import type { ComponentChildren } from 'preact';
import { signal } from '@preact/signals';
import { useEffect, useId, useRef, useState } from 'preact/hooks';
import type { ClosedLoan, Loan, LoansPage } from '../api';
import { ApiError, errorText, request } from '../api';
import { Empty, ErrorNote, Link, NotLoaded } from '../components';
import { hosts, int, span, when } from '../format';
import { journalHref } from '../router';
import { bump, canWrite, dataVersion, now, onApiError, token } from '../store';

/** How far back the closed loans go. */
const CLOSED_WINDOW_MS = 24 * 3600 * 1000;
/** The most closed loans listed; the rest are counted. */
const CLOSED_SHOWN = 20;

interface Loaded {
  page: LoansPage | null;
  /** The control plane's clock less the browser's, when the page came. */
  skew: number;
  error: unknown;
}

/**
 * GET /v1/pools/loans with the loans closed in the last 24 hours, again
 * whenever the data version moves.
 */
function useLoans(): Loaded & { retry: () => void } {
  const version = dataVersion.value;
  const [state, setState] = useState<Loaded>({ page: null, skew: 0, error: null });
  useEffect(() => {
    const tok = token.peek();
    if (!tok) return;
    const ctl = new AbortController();
    const since = new Date(Date.now() - CLOSED_WINDOW_MS).toISOString();
    request<LoansPage>('/v1/pools/loans?closed_since=' + encodeURIComponent(since), tok, { signal: ctl.signal }).then(
      (page) => {
        if (ctl.signal.aborted) return;
        const at = Date.parse(page.at);
        setState({ page, skew: isNaN(at) ? 0 : at - Date.now(), error: null });
      },
      (error: unknown) => {
        if (ctl.signal.aborted || (error instanceof DOMException && error.name === 'AbortError')) return;
        onApiError(error);
        setState((s) => ({ ...s, error }));
      },
    );
    return () => ctl.abort();
  }, [version]);
  return { ...state, retry: () => bump(0) };
}

/** What the last extend or reclaim did, in words (a polite live region). */
const done = signal<string | null>(null);

/** A loan's host as people know it: its node's name, else its ID. */
const nameOf = (l: { host: string; host_name?: string }) => l.host_name || l.host;

/** Where a loan's lease stands, at the control plane's time t (ms). */
export type LeaseState = 'ok' | 'notice' | 'expired' | 'reclaiming';

/** The state of loan l at t, with a reclaim notice of noticeMs. */
export function leaseState(l: Loan, t: number, noticeMs: number): LeaseState {
  if (l.reclaim_by) return 'reclaiming';
  const left = Date.parse(l.until) - t;
  if (left <= 0) return 'expired';
  return left <= noticeMs ? 'notice' : 'ok';
}

/** The lease's time left (or how long ago it ended), in words. */
function LeaseLeft(props: { l: Loan; skew: number; noticeMs: number }) {
  const { l, skew, noticeMs } = props;
  const t = now.value + skew;
  const left = Date.parse(l.until) - t;
  if (left <= 0) {
    return (
      <span class="lease-mark expired" data-testid="lease-left">
        <strong>Expired</strong> {span(-left)} ago
        {l.adopted ? ': adopted, so left to an operator to release or reclaim' : l.reclaim_by ? '' : ': being replaced and given back'}
      </span>
    );
  }
  if (left <= noticeMs && !l.reclaim_by) {
    return (
      <span class="lease-mark notice" data-testid="lease-left">
        <strong>Within the reclaim notice</strong> ({span(noticeMs)}): {span(left)} left
      </span>
    );
  }
  return <span data-testid="lease-left">{span(left)} left</span>;
}

/** When a reclaimed host is due back, and how long that is from now. */
function ReclaimBy(props: { by: string; skew: number }) {
  const left = Date.parse(props.by) - (now.value + props.skew);
  return (
    <>
      <time dateTime={props.by}>{when(props.by)}</time>
      <br />
      <span class="lease-mark notice">
        <strong>Being reclaimed</strong>: {left > 0 ? `back within ${span(left)}` : `due back ${span(-left)} ago`}
      </span>
    </>
  );
}

/** A field of an action's dialog besides the reason. */
interface Field {
  name: string;
  label: string;
  hint: string;
  type?: 'text' | 'number';
  value?: string;
  /** Asked before the reason (else after it); the first field has the focus. */
  before?: boolean;
}

/**
 * An operator's action: a button that opens a modal dialog asking why (and
 * what fields says), which sends it and shows the API's refusal in words.
 * send returns what was done, for the page's status line.
 */
function Action(props: {
  write: string;
  opener: ComponentChildren;
  title: string;
  intro: ComponentChildren;
  fields: Field[];
  submit: string;
  send: (values: Record<string, string>) => Promise<string>;
}) {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const id = useId();
  const dialog = useRef<HTMLDialogElement>(null);
  const opener = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (open && dialog.current && !dialog.current.open) dialog.current.showModal();
  }, [open]);
  const closed = () => {
    setOpen(false);
    setError(null);
    setBusy(false);
    setTimeout(() => opener.current?.focus(), 0);
  };
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const values: Record<string, string> = {};
    form.forEach((v, k) => {
      values[k] = String(v).trim();
    });
    if (!values.reason) {
      setError('Say why: the reason goes into the journal.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      done.value = await props.send(values);
      dialog.current?.close();
      bump(0);
    } catch (err) {
      onApiError(err);
      setBusy(false);
      setError(err instanceof ApiError && err.status === 403 ? 'Your role may not do this.' : errorText(err));
    }
  };
  const field = (f: Field) => (
    <div class="field" key={f.name}>
      <label for={id + f.name}>{f.label}</label>
      {f.type === 'number' ? (
        <input id={id + f.name} name={f.name} type="number" min={1} step={1} defaultValue={f.value} aria-describedby={id + f.name + '-hint'} />
      ) : (
        <input id={id + f.name} name={f.name} type="text" defaultValue={f.value} aria-describedby={id + f.name + '-hint'} />
      )}
      <span id={id + f.name + '-hint'} class="small muted">
        {f.hint}
      </span>
    </div>
  );
  return (
    <>
      <button type="button" class="secondary" data-write={props.write} ref={opener} onClick={() => setOpen(true)}>
        {props.opener}
      </button>
      {open ? (
        <dialog ref={dialog} class="action" data-write={props.write + '-dialog'} aria-labelledby={id + '-title'} onClose={closed}>
          <form onSubmit={submit}>
            <h2 id={id + '-title'}>{props.title}</h2>
            <p>{props.intro}</p>
            {props.fields.filter((f) => f.before).map(field)}
            <div class="field">
              <label for={id + 'reason'}>Why? (journaled)</label>
              <input
                id={id + 'reason'}
                name="reason"
                type="text"
                maxLength={1024}
                aria-describedby={error ? id + '-error' : undefined}
              />
            </div>
            {props.fields.filter((f) => !f.before).map(field)}
            {error ? (
              <p id={id + '-error'} class="error" role="alert" data-testid="action-error">
                {error}
              </p>
            ) : null}
            <div class="actions">
              <button type="submit" disabled={busy}>
                {busy ? 'Sending…' : props.submit}
              </button>
              <button type="button" class="secondary" onClick={() => dialog.current?.close()}>
                Cancel
              </button>
            </div>
          </form>
        </dialog>
      ) : null}
    </>
  );
}

/** POST with the session's token. */
const post = <T,>(path: string, body: unknown) => request<T>(path, token.peek() ?? '', { method: 'POST', body });

function ExtendLease(props: { l: Loan; leaseMs: number }) {
  const { l } = props;
  const name = nameOf(l);
  return (
    <Action
      write="loan-extend"
      opener={
        <>
          Extend lease<span class="visually-hidden"> of {name}</span>
        </>
      }
      title={`Extend the lease of ${name}`}
      intro={`Lent by ${l.lender} to ${l.borrower}; the lease ends at ${when(l.until)}. The new lease runs from now.`}
      fields={[{ name: 'lease', label: 'New lease, from now (optional)', hint: `A duration such as 2h or 90m; without one, the pool's lease: ${span(props.leaseMs)}.` }]}
      submit={`Extend the lease of ${name}`}
      send={async (v) => {
        const body: Record<string, string> = { reason: v.reason };
        if (v.lease) body.lease = v.lease;
        const res = await post<Loan>(`/v1/pools/loans/${encodeURIComponent(l.host)}/extend`, body);
        return `The lease of ${name} (lent by ${res.lender} to ${res.borrower}) now ends at ${when(res.until)}.`;
      }}
    />
  );
}

/** The deadline field of a reclaim. */
const deadlineField = (noticeMs: number): Field => ({
  name: 'deadline',
  label: 'Back within (optional)',
  hint: `A duration such as 5m; without one, the pool's reclaim notice: ${span(noticeMs)}.`,
});

/** The words for the hosts a reclaim took back. */
function reclaimed(res: { reclaimed: Loan[] }): string {
  const n = res.reclaimed.length;
  const names = res.reclaimed.map((l) => `${nameOf(l)} (back by ${when(l.reclaim_by)})`).join(', ');
  return `Reclaimed ${int(n)} ${hosts(n)}: ${names}. Each is replaced first, then drained and returned.`;
}

function ReclaimHost(props: { l: Loan; pool: string; noticeMs: number }) {
  const { l, pool } = props;
  const name = nameOf(l);
  return (
    <Action
      write="loan-reclaim"
      opener={
        <>
          Reclaim<span class="visually-hidden"> {name}</span>
        </>
      }
      title={`Reclaim ${name} for ${l.lender}`}
      intro={`${l.borrower} gets replacement capacity first; then ${name} is drained and returned to ${l.lender}, by the deadline whether replaced or not.`}
      fields={[deadlineField(props.noticeMs)]}
      submit={`Reclaim ${name}`}
      send={async (v) => {
        const body: Record<string, unknown> = { hosts: [l.host], reason: v.reason };
        if (v.deadline) body.deadline = v.deadline;
        return reclaimed(await post<{ reclaimed: Loan[] }>(`/v1/pools/${encodeURIComponent(pool)}/reclaim`, body));
      }}
    />
  );
}

function ReclaimFromLender(props: { lender: string; lent: number; pool: string; noticeMs: number }) {
  const { lender, pool } = props;
  return (
    <Action
      write="lender-reclaim"
      opener={
        <>
          Reclaim<span class="visually-hidden"> hosts {lender} lent</span>
        </>
      }
      title={`Reclaim hosts ${lender} lent`}
      intro={`${lender} lent ${int(props.lent)} ${props.lent === 1 ? 'host that is' : 'hosts that are'} not being reclaimed. Hosts come back in reclaim order: the lowest-priority borrower's first, then the emptiest host.`}
      fields={[{ name: 'count', label: 'How many hosts', hint: `A whole number, at most ${int(props.lent)}.`, type: 'number', value: '1', before: true }, deadlineField(props.noticeMs)]}
      submit={`Reclaim from ${lender}`}
      send={async (v) => {
        const count = Number(v.count);
        if (!Number.isInteger(count) || count < 1) throw new Error(`How many hosts: want a whole number of at least 1, got "${v.count}".`);
        const body: Record<string, unknown> = { count, lender, reason: v.reason };
        if (v.deadline) body.deadline = v.deadline;
        return reclaimed(await post<{ reclaimed: Loan[] }>(`/v1/pools/${encodeURIComponent(pool)}/reclaim`, body));
      }}
    />
  );
}

/** Lender → borrower, read as words. */
function Parties(props: { lender: string; borrower: string }) {
  return (
    <>
      {props.lender || '—'} <span aria-hidden="true">→</span>
      <span class="visually-hidden"> lent to </span> {props.borrower}
    </>
  );
}

/** The column of Parties: lender → borrower. */
function PartiesHeader() {
  return (
    <th scope="col">
      Lender <span aria-hidden="true">→</span>
      <span class="visually-hidden">, </span> borrower
    </th>
  );
}

function LoanRow(props: { l: Loan; skew: number; terms: NonNullable<LoansPage['shared']>; write: boolean }) {
  const { l, skew, terms, write } = props;
  const noticeMs = terms.reclaim_notice_seconds * 1000;
  const t = now.value + skew;
  return (
    <tr data-host={nameOf(l)} data-node={l.host} data-state={leaseState(l, t, noticeMs)}>
      <th scope="row">
        <Link href={journalHref({ host: l.host })}>{nameOf(l)}</Link>
        {l.adopted ? (
          <p class="small" data-testid="adopted">
            <strong>Adopted</strong>: {l.adopted}
          </p>
        ) : null}
      </th>
      <td>
        <Parties lender={l.lender} borrower={l.borrower} />
      </td>
      <td>
        <time dateTime={l.since}>{when(l.since)}</time>
      </td>
      <td data-field="until">
        <time dateTime={l.until}>{when(l.until)}</time>
        <br />
        <LeaseLeft l={l} skew={skew} noticeMs={noticeMs} />
      </td>
      <td data-field="reclaim_by">{l.reclaim_by ? <ReclaimBy by={l.reclaim_by} skew={skew} /> : <span class="muted">Not reclaimed</span>}</td>
      {write ? (
        <td>
          <div class="row-actions">
            {l.reclaim_by ? (
              <span class="small muted">Being reclaimed: it cannot be extended.</span>
            ) : (
              <>
                <ExtendLease l={l} leaseMs={terms.lease_seconds * 1000} />
                <ReclaimHost l={l} pool={terms.pool} noticeMs={noticeMs} />
              </>
            )}
          </div>
        </td>
      ) : null}
    </tr>
  );
}

/** The words for why a loan closed. */
const REASONS: Record<string, string> = {
  returned: 'Returned (no longer needed, or released)',
  'lease expired': 'Lease expired',
  reclaimed: 'Reclaimed by its owner',
};

function ClosedLoans(props: { closed: ClosedLoan[]; headingId: string }) {
  const newest = [...props.closed].reverse();
  const shown = newest.slice(0, CLOSED_SHOWN);
  return (
    <>
      <table aria-labelledby={props.headingId} data-testid="loans-closed">
        <thead>
          <tr>
            <th scope="col">Host</th>
            <PartiesHeader />
            <th scope="col">Since</th>
            <th scope="col">Lease ended</th>
            <th scope="col">Returned</th>
            <th scope="col">Why</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((c) => (
            <tr key={c.host + c.returned} data-host={nameOf(c)} data-reason={c.reason}>
              <th scope="row">
                <Link href={journalHref({ host: c.host })}>{nameOf(c)}</Link>
              </th>
              <td>
                <Parties lender={c.lender} borrower={c.borrower} />
              </td>
              <td>
                <time dateTime={c.since}>{when(c.since)}</time>
              </td>
              <td>
                <time dateTime={c.until}>{when(c.until)}</time>
              </td>
              <td>
                <time dateTime={c.returned}>{when(c.returned)}</time>
              </td>
              <td>{REASONS[c.reason] ?? c.reason}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {newest.length > shown.length ? (
        <p class="small">
          And {int(newest.length - shown.length)} older; <code>spillway pools loans --closed 24h</code> lists all {int(newest.length)}.
        </p>
      ) : null}
    </>
  );
}

/** The shared pool's loans: open, by lender, and closed in the last 24 hours. */
export function Loans() {
  const { page, skew, error, retry } = useLoans();
  const id = useId();
  const write = canWrite.value;
  useEffect(() => () => void (done.value = null), []);
  if (page === null) {
    return (
      <section class="loans" aria-labelledby={id} data-testid="loans">
        <h2 id={id}>Lent hosts</h2>
        <NotLoaded what="the loans" error={error} retry={retry} />
      </section>
    );
  }
  const terms = page.shared;
  if (!terms) {
    return (
      <section class="loans" aria-labelledby={id} data-testid="loans">
        <h2 id={id}>Lent hosts</h2>
        <Empty>No shared pool configured, so no host is lent.</Empty>
      </section>
    );
  }
  const mine = (l: { tier: string; pool: string }) => l.tier === 'shared' && l.pool === terms.pool;
  const open = page.loans.filter(mine).sort((a, b) => Date.parse(a.reclaim_by ?? a.until) - Date.parse(b.reclaim_by ?? b.until));
  const closed = (page.closed ?? []).filter(mine);
  const lenders = new Map<string, { lent: number; reclaiming: number }>();
  for (const l of open) {
    const c = lenders.get(l.lender) ?? { lent: 0, reclaiming: 0 };
    if (l.reclaim_by) c.reclaiming++;
    else c.lent++;
    lenders.set(l.lender, c);
  }
  const reclaiming = open.filter((l) => l.reclaim_by).length;
  return (
    <section class="loans" aria-labelledby={id} data-testid="loans">
      <h2 id={id}>Hosts lent from the shared pool ({terms.pool})</h2>
      {error ? (
        <ErrorNote>
          <p>Could not refresh the loans: {errorText(error)}. Showing them as of {when(page.at)}.</p>
        </ErrorNote>
      ) : null}
      <p>
        <strong data-testid="loans-count">
          {int(open.length)} {hosts(open.length)} lent now
        </strong>
        {reclaiming ? `, ${int(reclaiming)} of them being reclaimed` : ''}. A lease runs {span(terms.lease_seconds * 1000)}; when it ends,
        or when its owner reclaims it, the host's work gets replacement capacity first, then the host is drained (within{' '}
        {span(terms.drain_deadline_seconds * 1000)}) and given back. The reclaim notice is {span(terms.reclaim_notice_seconds * 1000)}: a lease that ends sooner is marked.
      </p>
      <p class="quiet" role="status" data-testid="loan-done">
        {done.value}
      </p>
      {open.length ? (
        <table aria-labelledby={id} data-testid="loans-open">
          <thead>
            <tr>
              <th scope="col">Host</th>
              <PartiesHeader />
              <th scope="col">Since</th>
              <th scope="col">Lease ends</th>
              <th scope="col">Reclaim by</th>
              {write ? <th scope="col">Actions</th> : null}
            </tr>
          </thead>
          <tbody>
            {open.map((l) => (
              <LoanRow key={l.host} l={l} skew={skew} terms={terms} write={write} />
            ))}
          </tbody>
        </table>
      ) : (
        <Empty>No host of the shared pool is lent now.</Empty>
      )}
      {lenders.size ? (
        <>
          <h3 id={id + '-lenders'}>By lender</h3>
          <table class="narrow" aria-labelledby={id + '-lenders'} data-testid="loans-lenders">
            <thead>
              <tr>
                <th scope="col">Lender</th>
                <th scope="col" class="num">
                  Lent
                </th>
                <th scope="col" class="num">
                  Being reclaimed
                </th>
                {write ? <th scope="col">Actions</th> : null}
              </tr>
            </thead>
            <tbody>
              {[...lenders].map(([lender, c]) => (
                <tr key={lender} data-lender={lender}>
                  <th scope="row">{lender || '—'}</th>
                  <td class="num">{int(c.lent)}</td>
                  <td class="num">{int(c.reclaiming)}</td>
                  {write ? (
                    <td>
                      <div class="row-actions">
                        {c.lent > 0 ? (
                          <ReclaimFromLender lender={lender} lent={c.lent} pool={terms.pool} noticeMs={terms.reclaim_notice_seconds * 1000} />
                        ) : (
                          <span class="small muted">Nothing left to reclaim.</span>
                        )}
                      </div>
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : null}
      <h3 id={id + '-closed'}>Closed in the last 24 hours</h3>
      {closed.length ? (
        <ClosedLoans closed={closed} headingId={id + '-closed'} />
      ) : (
        <Empty>No loan of the shared pool closed in the last 24 hours.</Empty>
      )}
    </section>
  );
}
