// A small history.pushState router. `spillway serve` answers index.html
// for any path that is not a built file, so every page has a real URL.

import { signal } from '@preact/signals';

/** The pages, by path. */
export const PAGES = { overview: '/overview', capacity: '/capacity' } as const;

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

window.addEventListener('popstate', () => {
  path.value = read();
});

/** Goes to url within the app. */
export function navigate(url: string): void {
  if (url !== window.location.pathname + window.location.search) history.pushState(null, '', url);
  path.value = read();
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
