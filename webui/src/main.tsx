// The entry point: the login gate, the shell (header, navigation, the
// freshness badge, who you are) and the page the address names.
//
// store is imported first: it moves a login link's token out of the
// address bar before anything else runs.

import { checkToken, canWrite, me, signOut, token } from './store';
import { render } from 'preact';
import { useEffect } from 'preact/hooks';
import './style.css';
import { Freshness, Link } from './components';
import { PAGES, path } from './router';
import { Login } from './pages/login';
import { Capacity } from './pages/capacity';
import { Overview } from './pages/overview';
import { Activities } from './pages/activities';
import { ActivityPage } from './pages/activity';
import { Journal } from './pages/journal';

function NotFound() {
  return (
    <>
      <h1>Page not found</h1>
      <p>
        The console has no page at {path.value}. Go to the <Link href={PAGES.overview}>overview</Link>.
      </p>
    </>
  );
}

function Shell() {
  const who = me.value!;
  const p = path.value;
  const activity = p.startsWith(PAGES.activities + '/') ? decodeURIComponent(p.slice(PAGES.activities.length + 1)) : null;
  const page =
    p === PAGES.overview
      ? { title: 'Overview', body: <Overview /> }
      : p === PAGES.capacity
        ? { title: 'Capacity by tier', body: <Capacity /> }
        : p === PAGES.activities
          ? { title: 'Activities', body: <Activities /> }
          : activity
            ? { title: 'Activity ' + activity, body: <ActivityPage key={activity} id={activity} /> }
            : p === PAGES.journal
              ? { title: 'Journal', body: <Journal /> }
              : { title: 'Page not found', body: <NotFound /> };
  const nav: [string, string][] = [
    [PAGES.overview, 'Overview'],
    [PAGES.activities, 'Activities'],
    [PAGES.journal, 'Journal'],
    [PAGES.capacity, 'Capacity by tier'],
  ];
  useEffect(() => {
    document.title = `${page.title} · Spillway`;
  }, [page.title]);
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Spillway</span>
        <nav aria-label="Main">
          <ul>
            {nav.map(([href, text]) => (
              <li key={href}>
                <Link href={href} aria-current={p === href || (href === PAGES.activities && activity) ? 'page' : undefined}>
                  {text}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <Freshness />
        <p class="who" data-testid="whoami">
          Signed in as <strong data-field="name">{who.name}</strong> (<span data-field="role">{who.role}</span>)
        </p>
        <button type="button" class="secondary" onClick={() => signOut(null)}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {page.body}
      </main>
    </>
  );
}

function App() {
  // Mark the document for the stylesheet, which hides every [data-write]
  // control unless the role may write: a second guard behind the pages'
  // own checks.
  useEffect(() => {
    document.documentElement.dataset.canWrite = canWrite.value ? 'true' : 'false';
  }, [canWrite.value]);
  useEffect(() => {
    if (!token.value) document.title = 'Sign in · Spillway';
  }, [token.value]);
  if (!token.value) return <Login />;
  if (!me.value) {
    return (
      <main id="main" class="login">
        <h1>Spillway console</h1>
        <p role="status">Checking your token…</p>
      </main>
    );
  }
  return <Shell />;
}

// A token from the login link or from this tab's earlier visit is checked
// before use.
if (token.value) void checkToken(token.value);
render(<App />, document.getElementById('app')!);
