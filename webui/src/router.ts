// A small history.pushState router. `spillway serve` answers index.html
// for any path that is not a built file, so every page has a real URL, and
// a page's filter lives in its query string (a link shares the view).

import { signal } from '@preact/signals';

/** The pages, by path. */
export const PAGES = { overview: '/overview', capacity: '/capacity', activities: '/activities', journal: '/journal' } as const;

/** The address of one activity. */
export function activityHref(id: string): string {
  return PAGES.activities + '/' + encodeURIComponent(id);
}

/** The journal's address with a filter. */
export function journalHref(filter: Record<string, string>): string {
  return PAGES.journal + '?' + new URLSearchParams(filter).toString();
}

function read(): string {
  let p = window.location.pathname.replace(/\/+$/, '');
  if (p === '' || p === '/index.html') {
    // The root is the overview.
    history.replaceState(history.state, '', PAGES.overview + window.location.search);
    p = PAGES.overview;
  }
  return p;
}

/** The current path. */
export const path = signal<string>(read());
/** The current query string ("?a=b", or ""). */
export const search = signal<string>(window.location.search);

function update(): void {
  path.value = read();
  search.value = window.location.search;
}

window.addEventListener('popstate', update);

/** Goes to url within the app. */
export function navigate(url: string): void {
  if (url !== window.location.pathname + window.location.search) history.pushState(null, '', url);
  update();
}

/** Handles a click on an in-app link: plain left clicks navigate without a reload. */
export function onLinkClick(e: MouseEvent): void {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.currentTarget as HTMLAnchorElement;
  const url = a.getAttribute('href');
  if (!url || !url.startsWith('/') || a.target) return;
  e.preventDefault();
  navigate(url);
}
