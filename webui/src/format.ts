// Numbers and times for people.

const pad = (n: number) => String(n).padStart(2, '0');

/** "10:42:07", local time. */
export function clock(t: string | number | Date | undefined | null): string {
  if (t === undefined || t === null || t === '') return '—';
  const d = new Date(t);
  if (isNaN(d.getTime())) return '—';
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A whole number with thousands separators: "12,000". */
export function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** An amount of money per hour: "0.05", "0.096" (two or three decimals). */
export function money(n: number): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 3 });
}

/** "1 host", "3 hosts". */
export function hosts(n: number): string {
  return n === 1 ? 'host' : 'hosts';
}

/** A duration for people: "45 s", "2 min 05 s", "1 h 03 min". */
export function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${pad(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${pad(m % 60)} min`;
}

/** "2026-12-01 10:42:07", local time. */
export function dateTime(t: string | number | Date | undefined | null): string {
  if (t === undefined || t === null || t === '') return '—';
  const d = new Date(t);
  if (isNaN(d.getTime())) return '—';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(d)}`;
}

/** Seconds with one decimal: "0.5 s", "12.0 s"; longer spans as span(). */
export function secs(s: number): string {
  return s < 60 ? `${s.toFixed(1)} s` : span(s * 1000);
}

/** clock() for a time today, dateTime() for any other day. */
export function when(t: string | number | Date | undefined | null, today: number = Date.now()): string {
  if (t === undefined || t === null || t === '') return '—';
  const d = new Date(t);
  if (isNaN(d.getTime())) return '—';
  return d.toDateString() === new Date(today).toDateString() ? clock(d) : dateTime(d);
}
