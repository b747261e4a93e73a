// The journal's event stream (GET /v1/events/stream) read with fetch():
// EventSource cannot send the Authorization header. It parses the SSE
// framing (id:, event:, data:, retry:, comments), resumes with
// Last-Event-ID after a drop (so no event is missed), and reconnects with
// capped backoff.

import type { JournalEvent } from './api';
import { REJECTED, signOut, token } from './store';
import type { StreamState } from './store';

export interface StreamHandlers {
  onEvent: (ev: JournalEvent) => void;
  onState: (s: StreamState) => void;
}

/** One parsed SSE message. */
export interface SSEMessage {
  id?: string;
  event: string;
  data: string;
}

/**
 * Feeds text into an SSE parser; returns a function that takes each chunk
 * and calls emit for every complete message. Exported for reading and
 * testing on its own.
 */
export function sseParser(emit: (m: SSEMessage) => void, onRetry?: (ms: number) => void): (chunk: string) => void {
  let buf = '';
  let data: string[] = [];
  let event = '';
  let id: string | undefined;
  const line = (l: string) => {
    if (l === '') {
      if (data.length) emit({ id, event: event || 'message', data: data.join('\n') });
      data = [];
      event = '';
      id = undefined;
      return;
    }
    if (l.startsWith(':')) return; // a comment: the keep-alive
    const colon = l.indexOf(':');
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? '' : l.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        data.push(value);
        break;
      case 'event':
        event = value;
        break;
      case 'id':
        if (!value.includes('\0')) id = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) onRetry?.(Number(value));
        break;
    }
  };
  return (chunk: string) => {
    buf += chunk;
    // Lines end in \n, \r\n or \r; a trailing \r may be half of \r\n.
    for (;;) {
      const m = /\r\n|\n|\r/.exec(buf);
      if (!m) break;
      if (m[0] === '\r' && m.index === buf.length - 1) break;
      line(buf.slice(0, m.index));
      buf = buf.slice(m.index + m[0].length);
    }
  };
}

const MAX_BACKOFF = 30000;
/** Reconnect when nothing (not even a keep-alive) came for this long. */
const SILENCE = 45000;

/** Starts following the stream; returns a function that stops it. */
export function startStream(h: StreamHandlers): () => void {
  let stopped = false;
  let lastId: string | null = null;
  let backoff = 1000;
  let ctl: AbortController | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;

  const connect = async () => {
    if (stopped) return;
    const tok = token.peek();
    if (!tok) return;
    ctl = new AbortController();
    const mine = ctl;
    let watchdog: ReturnType<typeof setTimeout> | null = null;
    const pet = () => {
      if (watchdog !== null) clearTimeout(watchdog);
      watchdog = setTimeout(() => mine.abort(), SILENCE);
    };
    let retryAfter = 0;
    try {
      const headers: Record<string, string> = { Authorization: 'Bearer ' + tok, Accept: 'text/event-stream' };
      if (lastId !== null) headers['Last-Event-ID'] = lastId;
      pet();
      const res = await fetch('/v1/events/stream', { headers, signal: mine.signal, cache: 'no-store', credentials: 'omit' });
      if (res.status === 401) {
        signOut(REJECTED + ' Sign in again.');
        return;
      }
      if (!res.ok || !res.body) {
        retryAfter = Number(res.headers.get('Retry-After') ?? '0') * 1000;
        throw new Error('stream answered ' + res.status);
      }
      h.onState('live');
      backoff = 1000;
      const parse = sseParser(
        (m) => {
          if (m.id !== undefined) lastId = m.id;
          if (!m.data) return;
          try {
            h.onEvent(JSON.parse(m.data) as JournalEvent);
          } catch {
            // not an event: ignore
          }
        },
        (ms) => {
          backoff = Math.max(1000, Math.min(ms, MAX_BACKOFF));
        },
      );
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pet();
        parse(value);
      }
    } catch {
      // dropped, refused or timed out: reconnect below
    } finally {
      if (watchdog !== null) clearTimeout(watchdog);
    }
    if (stopped) return;
    h.onState('reconnecting');
    const wait = Math.max(backoff, retryAfter);
    backoff = Math.min(backoff * 2, MAX_BACKOFF);
    timer = setTimeout(connect, wait + Math.random() * 250);
  };

  h.onState('connecting');
  void connect();
  return () => {
    stopped = true;
    ctl?.abort();
    if (timer !== null) clearTimeout(timer);
  };
}
