// The session, as signals: the token, who it is, the event stream's state,
// and the version counter that tells the pages to reload their data.
//
// The token lives in sessionStorage only: never in the address bar, never
// in a request's URL. A login link carries it in the URL's fragment
// (#token=...), which browsers do not send to the server; this module
// moves it to sessionStorage and clears the address bar as soon as the
// app loads, before anything renders.

import { computed, signal } from '@preact/signals';
import type { JournalEvent, WhoAmI } from './api';
import { ApiError, errorText, request } from './api';
import { startStream } from './stream';

const TOKEN_KEY = 'spillway.token';

/** The message for a token the API refuses (401). */
export const REJECTED = 'This token was not accepted. Check that it was copied whole, or ask an admin for one (spillway token create).';

function stored(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function store(tok: string | null): void {
  try {
    if (tok === null) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, tok);
  } catch {
    // storage disabled: the token lives in this page only
  }
}

/**
 * Takes a token from the address bar's fragment (#token=...), clears the
 * fragment at once with history.replaceState (no history entry keeps it),
 * and returns the token, or null when there is none.
 */
function takeFragmentToken(): string | null {
  const hash = window.location.hash;
  if (!hash.startsWith('#')) return null;
  const params = new URLSearchParams(hash.slice(1));
  if (!params.has('token')) return null;
  history.replaceState(history.state, '', window.location.pathname + window.location.search);
  const tok = (params.get('token') ?? '').trim();
  if (!tok) return null;
  store(tok);
  return tok;
}

const fromLink = takeFragmentToken();

/** The API token; kept in sessionStorage only. */
export const token = signal<string | null>(fromLink ?? stored());
/** Who the token is; null until GET /v1/whoami answered. */
export const me = signal<WhoAmI | null>(null);
/** Why the last session ended, shown on the login screen. */
export const signedOutReason = signal<string | null>(null);

const ROLES = ['viewer', 'operator', 'admin'];
/** Whether the token may make changes (operator or admin). */
export const canWrite = computed(() => {
  const r = me.value?.role;
  return r !== undefined && ROLES.indexOf(r) >= ROLES.indexOf('operator');
});

export type StreamState = 'connecting' | 'live' | 'reconnecting';
/** The state of the journal's event stream. */
export const streamState = signal<StreamState>('connecting');
/** When the stream last went down (ms since the epoch), or null while live. */
export const streamDownSince = signal<number | null>(null);
/** How many journal events the stream has delivered in this session. */
export const eventsSeen = signal(0);

/**
 * Moves when the data may have changed: a journal event arrived (debounced),
 * the stream came back after a break, or the slow poll ticked. Pages read
 * it to reload.
 */
export const dataVersion = signal(0);

/**
 * Moves on the slow poll and when the stream comes back after a break, not
 * on each event: a page that applies the events itself reloads on it.
 */
export const refreshVersion = signal(0);

/** When the stream last went live (ms since the epoch), or null. */
export const liveSince = signal<number | null>(null);

/** When the page's data last arrived (ms since the epoch). */
export const dataAt = signal<number | null>(null);

/** The time, moved every second: what ages and counts down reads. */
export const now = signal(Date.now());
setInterval(() => {
  now.value = Date.now();
}, 1000);

const listeners = new Set<(ev: JournalEvent) => void>();

/** Calls fn with every journal event the stream brings; returns the undo. */
export function onJournalEvent(fn: (ev: JournalEvent) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

let debounce: ReturnType<typeof setTimeout> | null = null;

/** Marks the data changed; pages reload after a short quiet period. */
export function bump(delay = 300): void {
  if (debounce !== null) return;
  debounce = setTimeout(() => {
    debounce = null;
    dataVersion.value++;
  }, delay);
}

/** How often the data is reloaded with no event: a safety net, not the feed. */
const POLL = 30_000;

let stopFns: (() => void)[] = [];

/** Stores the token and starts the stream and the poll. */
export function signIn(tok: string, who: WhoAmI): void {
  store(tok);
  signedOutReason.value = null;
  token.value = tok;
  me.value = who;
  startSession();
}

/** Forgets the token and stops everything the session started. */
export function signOut(reason: string | null = null): void {
  store(null);
  for (const f of stopFns) f();
  stopFns = [];
  token.value = null;
  me.value = null;
  streamState.value = 'connecting';
  streamDownSince.value = null;
  liveSince.value = null;
  eventsSeen.value = 0;
  dataAt.value = null;
  signedOutReason.value = reason;
}

/** Handles an API error of a signed-in request: a 401 ends the session. */
export function onApiError(err: unknown): void {
  if (err instanceof ApiError && err.status === 401) signOut(REJECTED + ' Sign in again.');
}

function startSession(): void {
  if (stopFns.length) return;
  const poll = setInterval(() => {
    bump(0);
    refreshVersion.value++;
  }, POLL);
  let wasLive = false;
  const stopStream = startStream({
    onEvent: (ev: JournalEvent) => {
      eventsSeen.value++;
      for (const fn of listeners) fn(ev);
      bump();
    },
    onState: (s: StreamState) => {
      if (s === 'live') {
        streamDownSince.value = null;
        liveSince.value = Date.now();
        if (wasLive) {
          // back after a break: catch up at once
          bump(0);
          refreshVersion.value++;
        }
        wasLive = true;
      } else if (s === 'reconnecting' && streamDownSince.peek() === null) {
        streamDownSince.value = Date.now();
      }
      streamState.value = s;
    },
  });
  // Close the stream before the page goes: a fetch left streaming can hold
  // one of the browser's few connections to the host into the next page.
  window.addEventListener('pagehide', stopStream);
  stopFns = [() => clearInterval(poll), stopStream, () => window.removeEventListener('pagehide', stopStream)];
}

/** Checks a token with GET /v1/whoami and signs in with it. */
export async function checkToken(tok: string): Promise<void> {
  try {
    const who = await request<WhoAmI>('/v1/whoami', tok);
    signIn(tok, who);
  } catch (err) {
    signOut(err instanceof ApiError && err.status === 401 ? REJECTED : 'Could not sign in: ' + errorText(err));
  }
}

// A login link opened in a tab that already runs the console changes only
// the fragment: take that token too.
window.addEventListener('hashchange', () => {
  const tok = takeFragmentToken();
  if (tok) {
    signOut();
    token.value = tok;
    void checkToken(tok);
  }
});
