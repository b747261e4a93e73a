// The overview (/overview, and / goes there): what an on-call engineer
// looks at during a spike, from GET /v1/overview. A capacity bar per
// tier, the demand of each scaled service, the cost, and a deadline bar
// per scale-out (trigger to deadline, cut into its phases, the projected
// finish and the longest phase marked, the outcome in words once it
// ended). Every bar's numbers are in its text.
//
// Live: the journal's events after the summary's last_seq are applied as
// they come (a scale-out's phase, its end), and the summary is fetched
// again when an event says capacity changed, a new scale-out began, or
// the stream connected after the summary was read (so nothing falls in
// between). No reload.

import { useEffect, useId, useRef, useState } from 'preact/hooks';
import type { JournalEvent, Overview as OverviewData, OverviewTier, ScaleOut } from '../api';
import { errorText, request } from '../api';
import { Empty, ErrorNote, Link, NotLoaded, Section } from '../components';
import { clock, hosts, int, money, span } from '../format';
import { activityHref, PAGES } from '../router';
import { dataAt, liveSince, now, onApiError, onJournalEvent, refreshVersion, token } from '../store';

/** The phases of a scale-out in order, in words. */
export const PHASES: Record<string, string> = {
  trigger: 'Trigger',
  decided: 'Count raised',
  capacity_requested: 'Capacity requested',
  hosts_running: 'Hosts running',
  nodes_ready: 'Nomad nodes ready',
  allocations_placed: 'Allocations placed',
  allocations_healthy: 'Allocations healthy',
};
const ORDER = Object.keys(PHASES);

const OUTCOMES: Record<string, string> = {
  in_progress: 'In progress',
  done: 'Done: every allocation got a host',
  partial: 'Partial: some work is still queued that no tier could give hosts for',
  unmet: 'Unmet: no host could be found for the work',
  failed: 'Failed',
};

const TIERS: Record<string, string> = { own: 'Own hosts', shared: 'Shared pool', warm: 'Cloud, warm', cold: 'Cloud' };

/** Kinds of journal events after which the summary is read again. */
function changesCapacity(ev: JournalEvent): boolean {
  const k = ev.kind;
  return (
    k === 'scale' ||
    k === 'activity.done' ||
    k === 'activity.missed_deadline' ||
    ['capacity.', 'host.', 'intent.', 'pool.', 'reconcile.', 'gc.'].some((p) => k.startsWith(p))
  );
}

/** Applies a phase or an end of a scale-out the page shows; false if it is not one. */
function apply(ov: OverviewData, ev: JournalEvent): OverviewData | null {
  const i = ov.scale_outs.findIndex((s) => s.activity === ev.activity);
  if (i < 0) return null;
  const so: ScaleOut = { ...ov.scale_outs[i], phases: [...ov.scale_outs[i].phases] };
  const d = ev.data ?? {};
  if (ev.kind === 'activity.phase' && typeof d.phase === 'string' && PHASES[d.phase] && !so.phases.some((p) => p.phase === d.phase)) {
    const prev = so.phases.length ? so.phases[so.phases.length - 1].time : so.triggered;
    const seconds = Math.max(0, (new Date(ev.time).getTime() - new Date(prev).getTime()) / 1000);
    so.phases.push({ phase: d.phase, time: ev.time, seconds });
    so.phases.sort((a, b) => ORDER.indexOf(a.phase) - ORDER.indexOf(b.phase));
    const longest = so.phases.filter((p) => p.phase !== 'trigger').reduce((a, b) => (b.seconds > a.seconds ? b : a), so.phases[0]);
    if (longest) so.critical_phase = longest.phase;
    if (d.phase === 'allocations_healthy') so.projected_finish = ev.time;
  } else if (ev.kind === 'activity.done') {
    so.outcome = (typeof d.outcome === 'string' ? d.outcome : 'done') as ScaleOut['outcome'];
    so.outcome_reason = typeof d.reason === 'string' ? d.reason : undefined;
    so.ended = ev.time;
  } else if (ev.kind === 'activity.missed_deadline') {
    so.missed_deadline = true;
  } else {
    return ov;
  }
  const scale_outs = [...ov.scale_outs];
  scale_outs[i] = so;
  return { ...ov, scale_outs };
}

/** GET /v1/overview, kept current by the journal's events. */
function useOverview() {
  const [ov, setOv] = useState<OverviewData | null>(null);
  const [error, setError] = useState<unknown>(null);
  const current = useRef<OverviewData | null>(null);
  const sentAt = useRef(0);
  const pending = useRef<ReturnType<typeof setTimeout> | null>(null);
  const ctl = useRef<AbortController | null>(null);
  // The latest events: a summary that arrives is brought up to date with
  // those newer than its last_seq.
  const recent = useRef<JournalEvent[]>([]);

  const set = (v: OverviewData) => {
    current.current = v;
    setOv(v);
  };
  const load = () => {
    const tok = token.peek();
    if (!tok) return;
    ctl.current?.abort();
    const c = new AbortController();
    ctl.current = c;
    sentAt.current = Date.now();
    request<OverviewData>('/v1/overview', tok, { signal: c.signal }).then(
      (v) => {
        if (c.signal.aborted) return;
        // Events that came while it loaded and are newer than it.
        let next = v;
        for (const ev of recent.current) if (ev.seq > next.last_seq) next = { ...(apply(next, ev) ?? next), last_seq: ev.seq };
        set(next);
        setError(null);
        dataAt.value = Date.now();
      },
      (err: unknown) => {
        if (c.signal.aborted || (err instanceof DOMException && err.name === 'AbortError')) return;
        onApiError(err);
        setError(err);
      },
    );
  };
  const reload = (delay = 150) => {
    if (pending.current !== null) return;
    pending.current = setTimeout(() => {
      pending.current = null;
      load();
    }, delay);
  };

  // The first load, the slow poll, and a stream back after a break.
  useEffect(() => load(), [refreshVersion.value]);
  // A stream that went live after the summary was read may have missed
  // what came in between: read it again.
  useEffect(() => {
    const at = liveSince.value;
    if (at !== null && sentAt.current !== 0 && at > sentAt.current) reload(0);
  }, [liveSince.value]);
  useEffect(() => {
    const off = onJournalEvent((ev) => {
      recent.current.push(ev);
      if (recent.current.length > 500) recent.current.splice(0, recent.current.length - 500);
      const v = current.current;
      if (v === null || ev.seq <= v.last_seq) return;
      const applied = apply(v, ev);
      if (applied) set({ ...applied, last_seq: ev.seq });
      if (changesCapacity(ev) || (!applied && (ev.kind === 'activity.phase' || ev.kind === 'decision'))) reload();
    });
    return () => {
      off();
      ctl.current?.abort();
      if (pending.current !== null) clearTimeout(pending.current);
    };
  }, []);
  return { ov, error, retry: () => reload(0) };
}

const pct = (part: number, whole: number) => (whole > 0 ? Math.max(0, Math.min(100, (part / whole) * 100)) : 0);

/** One tier: hosts in use against its total, with every number in text. */
function TierRow(props: { t: OverviewTier }) {
  const { t } = props;
  const h = t.hosts;
  const cloud = t.tier === 'warm' || t.tier === 'cold';
  const limits: string[] = [];
  if (t.limits.max_hosts) limits.push(`at most ${int(t.limits.max_hosts)} ${hosts(t.limits.max_hosts)}`);
  if (t.limits.budget_per_hour) limits.push(`budget ${money(t.limits.budget_per_hour)} ${t.currency ?? ''} per hour`.replace('  ', ' '));
  if (t.limits.quota) limits.push(`may borrow up to ${int(t.limits.quota)} shared ${hosts(t.limits.quota)}`);
  const scale = Math.max(h.total, t.limits.max_hosts ?? 0);
  return (
    <li class="tier-row" data-pool={t.pool} data-tier={t.tier}>
      <div class="tier-name">
        <strong>{t.pool}</strong> <span class="muted">({TIERS[t.tier] ?? t.tier})</span>
      </div>
      <div class="cap-bar" aria-hidden="true">
        <div class="cap-used" style={{ width: `${pct(h.in_use, scale)}%` }} />
        <div class="cap-free" style={{ width: `${pct(h.total - h.in_use, scale)}%` }} />
      </div>
      <p class="tier-text">
        <span data-field="hosts">
          {int(h.in_use)} of {int(h.total)} {hosts(h.total)} in use, {int(h.free)} free
        </span>
        {t.tier === 'own' && h.borrowed ? `, ${int(h.borrowed)} borrowed` : ''}
        {t.tier === 'shared' ? `, ${int(h.borrowed)} lent` : ''}. CPU {int(t.cpu_mhz.used)} of {int(t.cpu_mhz.total)} MHz used (
        {int(t.cpu_mhz.free)} free); memory {int(t.memory_mb.used)} of {int(t.memory_mb.total)} MB used ({int(t.memory_mb.free)} free).
        {cloud || t.tier === 'shared' ? ` Cost ${money(t.cost_per_hour)} ${t.currency ?? ''} per hour.` : ''}
        {limits.length ? ` Limits: ${limits.join(', ')}.` : ''}
        {t.time_to_ready_seconds ? ` A host is ready in about ${span(t.time_to_ready_seconds * 1000)}.` : ''}
        {t.paused ? ` Paused${t.paused.by ? ' by ' + t.paused.by : ''}: Spillway takes no hosts from it.` : ''}
      </p>
    </li>
  );
}

/** A scale-out's deadline bar: trigger to deadline, cut into phases. */
function DeadlineBar(props: { so: ScaleOut }) {
  const { so } = props;
  const id = useId();
  const t0 = new Date(so.triggered).getTime();
  const deadline = new Date(so.deadline).getTime();
  const ended = so.ended ? new Date(so.ended).getTime() : null;
  const nowMs = now.value;
  const projected = so.projected_finish ? new Date(so.projected_finish).getTime() : null;
  const last = so.phases.length ? new Date(so.phases[so.phases.length - 1].time).getTime() : t0;
  const head = ended ?? Math.max(nowMs, last);
  const end = Math.max(deadline, head, projected ?? 0);
  const x = (t: number) => pct(t - t0, end - t0);
  const inFlight = so.outcome === 'in_progress';
  const next = ORDER[ORDER.indexOf(so.phases[so.phases.length - 1]?.phase ?? 'trigger') + 1];
  const segs: { phase: string; from: number; to: number; open?: boolean }[] = [];
  let prev = t0;
  for (const p of so.phases) {
    const t = new Date(p.time).getTime();
    if (p.phase !== 'trigger') segs.push({ phase: p.phase, from: prev, to: t });
    prev = t;
  }
  if (inFlight && next) segs.push({ phase: next, from: prev, to: nowMs, open: true });
  const late = (ended ?? projected ?? nowMs) > deadline;
  const outcome = OUTCOMES[so.outcome] ?? so.outcome;
  return (
    <article class="scaleout" data-activity={so.activity} data-outcome={so.outcome} data-service={so.service} aria-labelledby={id}>
      <h3 id={id}>
        <Link href={activityHref(so.activity)} data-testid="activity-link">
          {so.service}
        </Link>{' '}
        <span class="muted small">({so.started_by === 'nomad' ? 'count changed in Nomad' : 'decided by a policy'})</span>
      </h3>
      <p class="outcome" data-testid="outcome">
        <strong>{outcome}</strong>
        {so.ended ? ` at ${clock(so.ended)}, ${span(new Date(so.ended).getTime() - t0)} after the trigger` : ''}
        {so.outcome_reason && so.outcome !== 'in_progress' ? ` (${so.outcome_reason})` : ''}
        {so.missed_deadline ? '. It missed its deadline.' : '.'}
      </p>
      <div class="deadline-bar" aria-hidden="true">
        {segs.map((s) => (
          <div
            key={s.phase}
            class={'seg seg-' + (ORDER.indexOf(s.phase) % 2 ? 'a' : 'b') + (s.open ? ' open' : '') + (s.phase === so.critical_phase ? ' critical' : '')}
            style={{ left: `${x(s.from)}%`, width: `${Math.max(0.5, x(s.to) - x(s.from))}%` }}
          />
        ))}
        <div class="mark deadline" style={{ left: `${x(deadline)}%` }} />
        {projected !== null && inFlight ? <div class="mark projected" style={{ left: `${x(projected)}%` }} /> : null}
      </div>
      <p class="small">
        Triggered at {clock(so.triggered)}; deadline {clock(so.deadline)} (
        {inFlight ? (deadline > nowMs ? `${span(deadline - nowMs)} left` : `passed ${span(nowMs - deadline)} ago`) : `${span(deadline - t0)} budget`}).{' '}
        {projected !== null && inFlight ? (
          <span data-testid="projected">
            Projected finish {clock(projected)}, {late ? `${span(projected - deadline)} after` : `${span(deadline - projected)} before`} the deadline
            {so.pools.length ? ` (from the time-to-ready of ${so.pools.join(', ')})` : ''}.
          </span>
        ) : inFlight ? (
          'Projected finish: not known until capacity is asked for.'
        ) : null}
      </p>
      <ol class="phases" data-testid="phases">
        {so.phases.map((p) => (
          <li key={p.phase} data-phase={p.phase} class={p.phase === so.critical_phase ? 'critical' : undefined}>
            {PHASES[p.phase] ?? p.phase} at {clock(p.time)}
            {p.phase === 'trigger' ? '' : `, ${span(p.seconds * 1000)} after the phase before`}
            {p.phase === so.critical_phase ? <strong> (the longest phase)</strong> : null}
          </li>
        ))}
        {inFlight && next ? (
          <li data-phase={next} data-open="true" class={'open' + (next === so.critical_phase ? ' critical' : '')}>
            Waiting for: {PHASES[next] ?? next}, {span(nowMs - prev)} so far
            {next === so.critical_phase ? <strong> (the longest phase)</strong> : null}
          </li>
        ) : null}
      </ol>
    </article>
  );
}

export function Overview() {
  const { ov, error, retry } = useOverview();
  // When the data is first on screen (the browser test reads it).
  useEffect(() => {
    if (ov !== null && performance.getEntriesByName('spillway:overview-data').length === 0) performance.mark('spillway:overview-data');
  }, [ov !== null]);
  if (ov === null) {
    return (
      <>
        <h1>Overview</h1>
        <NotLoaded what="the overview" error={error} retry={retry} />
      </>
    );
  }
  const active = ov.scale_outs.filter((s) => s.outcome === 'in_progress');
  const ended = ov.scale_outs.filter((s) => s.outcome !== 'in_progress');
  const cur = ov.cost.currency ?? '';
  const byTier = Object.entries(ov.cost.per_hour_by_tier).filter(([t]) => t !== 'own');
  return (
    <div data-testid="overview" data-last-seq={ov.last_seq}>
      <h1>Overview</h1>
      {error ? (
        <ErrorNote>
          <p>
            Could not refresh: {errorText(error)}. Showing the overview as of {clock(ov.at)}.
          </p>
        </ErrorNote>
      ) : null}
      {ov.problems.length ? (
        <ErrorNote>
          {ov.problems.map((p) => (
            <p key={p}>{p}</p>
          ))}
        </ErrorNote>
      ) : null}
      <Section title="Scale-outs" testid="scale-outs">
        {active.length ? active.map((s) => <DeadlineBar key={s.activity} so={s} />) : <Empty>No scale-out in progress.</Empty>}
        <h3 class="sub">Ended in the last 15 minutes</h3>
        {ended.length ? ended.map((s) => <DeadlineBar key={s.activity} so={s} />) : <Empty>None.</Empty>}
      </Section>
      <div class="cols">
        <Section title="Capacity by tier" testid="capacity">
          {ov.tiers.length ? (
            <ul class="tiers">
              {ov.tiers.map((t) => (
                <TierRow key={t.pool} t={t} />
              ))}
            </ul>
          ) : (
            <Empty>No pools configured: this control plane lends and rents no hosts.</Empty>
          )}
          <p class="small">
            <Link href={PAGES.capacity}>Capacity by tier in detail</Link>
          </p>
        </Section>
        <div>
          <Section title="Demand" testid="demand">
            {ov.demand.length ? (
              <table>
                <thead>
                  <tr>
                    <th scope="col">Service</th>
                    <th scope="col" class="num">
                      Wanted
                    </th>
                    <th scope="col" class="num">
                      Running
                    </th>
                    <th scope="col" class="num">
                      Starting
                    </th>
                    <th scope="col" class="num">
                      Queued
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {ov.demand.map((d) => (
                    <tr key={d.service} data-service={d.service}>
                      <th scope="row">{d.service}</th>
                      <td class="num" data-field="wanted">
                        {int(d.wanted)}
                      </td>
                      <td class="num" data-field="running">
                        {int(d.running)}
                      </td>
                      <td class="num" data-field="starting">
                        {int(d.starting)}
                      </td>
                      <td class="num" data-field="queued">
                        {int(d.queued)}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            ) : (
              <Empty>No scaled service.</Empty>
            )}
          </Section>
          <Section title="Cost" testid="cost">
            <p>
              <strong data-field="per_hour">
                {money(ov.cost.per_hour)} {cur}
              </strong>{' '}
              per hour now
              {byTier.length ? ': ' + byTier.map(([t, c]) => `${TIERS[t] ?? t} ${money(c)}`).join(', ') : ''}.
            </p>
            <p data-testid="burst">
              {ov.cost.burst
                ? `The current burst holds ${int(ov.cost.burst.hosts)} borrowed or rented ${hosts(ov.cost.burst.hosts)} since ${clock(ov.cost.burst.since)} and has cost ${money(ov.cost.burst.cost_so_far)} ${cur} so far.`
                : 'No burst: no host is borrowed or rented.'}
            </p>
          </Section>
        </div>
      </div>
    </div>
  );
}
