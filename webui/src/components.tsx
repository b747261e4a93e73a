// Shared pieces: links, messages, and the freshness badge.

import type { AnchorHTMLAttributes, ComponentChildren } from 'preact';
import { useId } from 'preact/hooks';
import { errorText } from './api';
import { clock, span } from './format';
import { onLinkClick } from './router';
import { dataAt, eventsSeen, now, streamDownSince, streamState } from './store';

/** An in-app link (pushState navigation). */
export function Link(props: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  return <a {...props} onClick={onLinkClick} />;
}

export function ErrorNote(props: { children?: ComponentChildren }) {
  return (
    <div class="error" role="alert">
      {props.children}
    </div>
  );
}

export function Empty(props: { children?: ComponentChildren }) {
  return <p class="empty">{props.children}</p>;
}

/** A page's section: a panel headed by its title. */
export function Section(props: { title: string; testid: string; children?: ComponentChildren }) {
  const id = useId();
  return (
    <section class="panel" aria-labelledby={id} data-testid={props.testid}>
      <h2 id={id}>{props.title}</h2>
      {props.children}
    </section>
  );
}

/** What a page shows before its data is there: the error with a retry, or that it is loading ("the overview"). */
export function NotLoaded(props: { what: string; error: unknown; retry: () => void }) {
  return props.error ? (
    <ErrorNote>
      <p>
        Could not load {props.what}: {errorText(props.error)}
      </p>
      <button type="button" onClick={props.retry}>
        Try again
      </button>
    </ErrorNote>
  ) : (
    <p class="muted">Loading {props.what}…</p>
  );
}

const WORDS = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…' };

/**
 * The live feed's state in words (never colour alone), and when the page's
 * data was last loaded and how old it is. data-events counts the events the stream brought.
 */
export function Freshness() {
  const at = dataAt.value;
  const st = streamState.value;
  const down = streamDownSince.value;
  return (
    <p class={'freshness ' + st} data-testid="freshness" data-state={st} data-events={eventsSeen.value}>
      <span class="dot" aria-hidden="true" />
      <span role="status">
        {WORDS[st]}
        {st === 'reconnecting' && down !== null ? ` (down since ${clock(down)})` : ''}
      </span>
      <span class="muted" data-testid="data-age">
        {' '}
        · updated {at === null ? 'not yet' : `${clock(at)} (${span(now.value - at)} ago)`}
      </span>
    </p>
  );
}
