// One activity (/activities/{id}) from GET /v1/activities/{id}: what
// started it and the decision, linked; a Gantt view (the seven phases
// against the deadline, then one row per host: requested, running, Nomad
// node ready, allocations placed, serving; the tier in text as well as
// colour); the source waterfall (each tier and pool tried, in order, used
// or skipped with the reason, the provider's error and the time it cost).
// Each picture has a table with the same data.

import type { ComponentChildren } from 'preact';
import { useId } from 'preact/hooks';
import type { ActivityDetail, HostTimeline, SourceStep } from '../api';
import { Empty, Link, NotLoaded, Section } from '../components';
import { clock, dateTime, secs, span } from '../format';
import { useApi } from '../load';
import { journalHref, PAGES } from '../router';
import { outcomeText } from './activities';
import { PHASES } from './overview';

export const TIER_WORDS: Record<string, string> = { own: 'own hosts', shared: 'shared pool', warm: 'cloud, warm', cold: 'cloud' };

const STEPS: [keyof HostTimeline, string][] = [
  ['requested', 'Requested'],
  ['running', 'Running'],
  ['ready', 'Nomad node ready'],
  ['placed', 'Allocations placed'],
  ['serving', 'Serving'],
];

const REASONS: Record<string, string> = {
  insufficient_capacity: 'insufficient capacity',
  quota: 'quota',
  throttled: 'throttled',
  unavailable: 'the cloud was unavailable',
  auth: 'credentials refused',
  not_found: 'not found',
  other: 'an error',
};

const TRIGGERS: Record<string, string> = {
  alert: 'An alert',
  policy_check: "A policy's check",
  manual: 'A manual scaling',
  nomad: 'A count changed in Nomad',
};

/** The reason a source was skipped, in words. */
export function reasonText(r: string | undefined): string {
  if (!r) return '';
  return REASONS[r] ?? r;
}

const ms = (t: string | undefined) => (t ? new Date(t).getTime() : null);

interface Bar {
  label: string;
  from: number;
  to: number;
  cls: string;
}
interface GanttRow {
  key: string;
  name: ComponentChildren;
  kind: 'phase' | 'host';
  tier?: string;
  bars: Bar[];
  text: string;
}

function ganttRows(a: ActivityDetail, t0: number): GanttRow[] {
  const rows: GanttRow[] = [];
  const so = a.scale_out;
  if (so) {
    let prev = t0;
    for (const p of so.phases) {
      const t = new Date(p.time).getTime();
      const critical = p.phase === so.critical_phase;
      rows.push({
        key: 'phase-' + p.phase,
        name: PHASES[p.phase] ?? p.phase,
        kind: 'phase',
        bars: p.phase === 'trigger' ? [] : [{ label: PHASES[p.phase] ?? p.phase, from: prev, to: t, cls: critical ? 'critical' : '' }],
        text: `${clock(p.time)}${p.phase === 'trigger' ? '' : `, ${secs(p.seconds)} after the phase before`}${critical ? ' (the longest phase)' : ''}`,
      });
      prev = t;
    }
  }
  for (const h of a.host_timelines) {
    const bars: Bar[] = [];
    let prev: number | null = null;
    let prevLabel = '';
    for (const [k, label] of STEPS) {
      const t = ms(h[k] as string | undefined);
      if (t === null) continue;
      if (prev !== null) bars.push({ label: `${prevLabel} to ${label.toLowerCase()}`, from: prev, to: t, cls: 'tier-' + h.tier });
      prev = t;
      prevLabel = label;
    }
    if (bars.length === 0 && prev !== null) bars.push({ label: prevLabel, from: prev, to: prev, cls: 'tier-' + h.tier });
    rows.push({
      key: 'host-' + h.host,
      name: (
        <>
          {h.host} <span class="muted">({TIER_WORDS[h.tier] ?? h.tier}, {h.pool})</span>
        </>
      ),
      kind: 'host',
      tier: h.tier,
      bars,
      text: '',
    });
  }
  return rows;
}

function Gantt(props: { a: ActivityDetail }) {
  const { a } = props;
  const so = a.scale_out;
  const t0 = new Date(so?.triggered ?? a.triggered ?? a.started).getTime();
  const deadline = ms(so?.deadline ?? a.deadline);
  const rows = ganttRows(a, t0);
  let end = Math.max(deadline ?? 0, new Date(a.updated).getTime());
  for (const r of rows) for (const b of r.bars) end = Math.max(end, b.to);
  const x = (t: number) => `${Math.max(0, Math.min(100, ((t - t0) / Math.max(1, end - t0)) * 100)).toFixed(2)}%`;
  const w = (b: Bar) => `${Math.max(0.6, ((b.to - b.from) / Math.max(1, end - t0)) * 100).toFixed(2)}%`;
  const hostRows = rows.filter((r) => r.kind === 'host').length;
  const captionId = useId();
  return (
    <>
      <div
        class="gantt"
        data-testid="gantt"
        role="img"
        aria-label={`Gantt view: ${so ? so.phases.length + ' phases and ' : ''}${hostRows} ${hostRows === 1 ? 'host' : 'hosts'} over ${span(end - t0)}${deadline !== null ? `, the deadline ${span(deadline - t0)} after the trigger` : ''}. The tables below give the same.`}
      >
        {rows.map((r) => (
          <div key={r.key} class={'gantt-row ' + r.kind} data-row={r.kind} data-tier={r.tier}>
            <span class="gantt-name">{r.name}</span>
            <div class="gantt-lane">
              {deadline !== null ? <span class="mark deadline" style={{ left: x(deadline) }} /> : null}
              {r.bars.map((b, i) => (
                <span key={i} class={'gbar ' + b.cls + ' step-' + i} style={{ left: x(b.from), width: w(b) }} />
              ))}
            </div>
          </div>
        ))}
        <div class="gantt-row axis">
          <span class="gantt-name" />
          <div class="gantt-lane small">
            <span style={{ left: '0%' }}>0 s</span>
            {deadline !== null ? <span style={{ left: x(deadline) }}>deadline {span(deadline - t0)}</span> : null}
          </div>
        </div>
      </div>
      <p class="small muted">
        Rows of hosts: requested, then running, Nomad node ready, allocations placed and serving; each tier has its own colour and is
        named in the row. The thick line is the deadline.
      </p>
      {so ? (
        <table data-testid="phase-table">
          <caption>The phases of the scale-out</caption>
          <thead>
            <tr>
              <th scope="col">Phase</th>
              <th scope="col">At</th>
              <th scope="col">Took</th>
            </tr>
          </thead>
          <tbody>
            {so.phases.map((p) => (
              <tr key={p.phase} data-phase={p.phase}>
                <th scope="row">{PHASES[p.phase] ?? p.phase}</th>
                <td>{clock(p.time)}</td>
                <td>
                  {p.phase === 'trigger' ? '—' : secs(p.seconds)}
                  {p.phase === so.critical_phase ? <strong> (the longest phase)</strong> : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {a.host_timelines.length ? (
        <table data-testid="host-table" aria-describedby={captionId}>
          <caption id={captionId}>One row per host, in seconds after the trigger</caption>
          <thead>
            <tr>
              <th scope="col">Host</th>
              <th scope="col">Tier and pool</th>
              {STEPS.map(([, label]) => (
                <th scope="col" key={label}>
                  {label}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {a.host_timelines.map((h) => (
              <tr key={h.host} data-host={h.host} data-tier={h.tier} data-pool={h.pool}>
                <th scope="row">
                  <Link href={journalHref({ host: h.host })}>{h.host}</Link>
                </th>
                <td>
                  {TIER_WORDS[h.tier] ?? h.tier}: {h.pool}
                  {h.offering ? `, ${h.offering}` : ''}
                </td>
                {STEPS.map(([k]) => {
                  const t = ms(h[k] as string | undefined);
                  return <td key={k}>{t === null ? (k === 'requested' ? '—' : h.ended ? 'never' : 'not yet') : secs((t - t0) / 1000)}</td>;
                })}
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <Empty>No host was borrowed or rented for it.</Empty>
      )}
    </>
  );
}

function stepText(s: SourceStep): string {
  switch (s.result) {
    case 'used':
      return `Used: ${s.hosts} ${s.hosts === 1 ? 'host' : 'hosts'}${s.asked && s.asked > s.hosts ? ` of ${s.asked} asked` : ''}${
        s.reason ? `; the rest skipped: ${reasonText(s.reason)}` : ''
      }`;
    case 'skipped':
      return `Skipped: ${reasonText(s.reason)}`;
    case 'hedged':
      return `Hedged: ${s.reason ?? ''}`;
    default:
      return `Unmet: ${s.reason ?? ''}`;
  }
}

function Waterfall(props: { a: ActivityDetail }) {
  const { sources } = props.a;
  if (!sources.length) return <Empty>No tier was asked: Nomad placed the work on the hosts it had, or it was a scale-in.</Empty>;
  const longest = Math.max(1, ...sources.map((s) => s.seconds ?? 0));
  return (
    <>
      <ol class="waterfall" data-testid="waterfall" aria-label="The tiers tried, in order">
        {sources.map((s, i) => (
          <li key={i} data-pool={s.pool} data-tier={s.tier} data-result={s.result} data-reason={s.reason} class={'source ' + s.result}>
            <span class="source-name">
              <strong>{s.pool || 'Nothing left to ask'}</strong>
              {s.tier ? <span class="muted"> ({TIER_WORDS[s.tier] ?? s.tier})</span> : null}
            </span>
            <span class="source-bar" aria-hidden="true">
              <span class={'wbar ' + s.result} style={{ width: `${Math.max(1, ((s.seconds ?? 0) / longest) * 100)}%` }} />
            </span>
            <span class="source-text">
              <span class="verdict">{s.result === 'used' ? '✓ ' : '✗ '}</span>
              {stepText(s)}
              {s.seconds ? `, ${secs(s.seconds)}` : ''}
            </span>
          </li>
        ))}
      </ol>
      <table data-testid="waterfall-table">
        <caption>The source waterfall: each tier and pool tried, in order</caption>
        <thead>
          <tr>
            <th scope="col">At</th>
            <th scope="col">Pool</th>
            <th scope="col">Tier</th>
            <th scope="col">Offerings</th>
            <th scope="col">Result</th>
            <th scope="col">Provider's error</th>
            <th scope="col">Time it cost</th>
          </tr>
        </thead>
        <tbody>
          {sources.map((s, i) => (
            <tr key={i} data-pool={s.pool} data-result={s.result}>
              <td>{clock(s.time)}</td>
              <th scope="row">{s.pool || '—'}</th>
              <td>{s.tier ? TIER_WORDS[s.tier] ?? s.tier : '—'}</td>
              <td>{s.offerings?.join(', ') || '—'}</td>
              <td>{stepText(s)}</td>
              <td>{s.error || '—'}</td>
              <td>{s.seconds !== undefined ? secs(s.seconds) : '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function ActivityPage(props: { id: string }) {
  const { data: a, error, retry } = useApi<ActivityDetail>('/v1/activities/' + encodeURIComponent(props.id));
  if (a === null) {
    return (
      <>
        <h1>Activity {props.id}</h1>
        <NotLoaded what="the activity" error={error} retry={retry} />
      </>
    );
  }
  const so = a.scale_out;
  const used = [...new Set(a.sources.filter((s) => s.result === 'used').map((s) => `${s.pool} (${TIER_WORDS[s.tier ?? ''] ?? s.tier})`))];
  const finish = so?.ended ?? (a.outcome ? a.updated : undefined);
  const deadline = so?.deadline ?? a.deadline;
  return (
    <div data-testid="activity" data-activity={a.id}>
      <h1>
        {a.direction === 'down' ? 'Scale-in' : 'Scale-out'} of {a.service}
      </h1>
      <p class="small muted">
        Activity {a.id}. <Link href={PAGES.activities}>All activities</Link>
      </p>
      <dl class="facts" data-testid="facts">
        <dt>Outcome</dt>
        <dd data-field="outcome">
          {outcomeText(a)}
          {so?.outcome_reason ? ` (${so.outcome_reason})` : ''}
        </dd>
        <dt>Deadline</dt>
        <dd data-field="deadline">
          {deadline
            ? `${dateTime(deadline)}: ${
                a.missed_deadline ? 'missed' : finish ? `met, ${span(new Date(deadline).getTime() - new Date(finish).getTime())} to spare` : 'not passed yet'
              }`
            : 'none (a scale-in)'}
        </dd>
        <dt>Count</dt>
        <dd>
          {a.from} → {a.to}
        </dd>
        <dt>Trigger</dt>
        <dd data-field="trigger">
          {TRIGGERS[a.trigger.by] ?? a.trigger.by} at {clock(a.trigger.time)}: {a.trigger.text}
          {a.trigger.alerts?.length ? (
            <>
              {' '}
              (alerts{' '}
              {a.trigger.alerts.map((fp, i) => (
                <span key={fp}>
                  {i ? ', ' : ''}
                  <Link href={journalHref({ text: fp, kind: 'alert' })}>{fp}</Link>
                </span>
              ))}
              )
            </>
          ) : null}
        </dd>
        <dt>Decision</dt>
        <dd data-field="decision">
          {a.decision ? (
            <>
              <Link href={journalHref({ activity: a.id, kind: 'decision' })}>{a.decision.message}</Link>
              {a.policy ? ` (policy ${a.policy})` : ''}
            </>
          ) : (
            'none: the count was changed in Nomad'
          )}
        </dd>
        <dt>Business unit</dt>
        <dd>{a.business_unit ?? '—'}</dd>
        <dt>Hosts from</dt>
        <dd data-field="used">{used.length ? used.join(', ') : 'no tier'}</dd>
        {so?.critical_phase ? (
          <>
            <dt>Longest phase</dt>
            <dd data-field="critical">{PHASES[so.critical_phase] ?? so.critical_phase}</dd>
          </>
        ) : null}
      </dl>
      <p>
        <Link href={journalHref({ activity: a.id })} data-testid="journal-link">
          The journal's events of this activity
        </Link>
      </p>
      <Section title="Where the time went" testid="timeline">
        <Gantt a={a} />
      </Section>
      <Section title="Where the hosts came from" testid="sources">
        <Waterfall a={a} />
      </Section>
    </div>
  );
}
