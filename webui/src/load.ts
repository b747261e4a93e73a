// Loading a page's data from the API: again when the journal brings an
// event (debounced by the store) and on the slow poll; an error is kept
// beside the last good data.

import { useEffect, useRef, useState } from 'preact/hooks';
import { request } from './api';
import { dataAt, dataVersion, onApiError, token } from './store';

export interface Loaded<T> {
  data: T | null;
  error: unknown;
  loading: boolean;
  retry: () => void;
}

/** GET path (null: nothing to load), reloaded when the data may have changed. */
export function useApi<T>(path: string | null, live = true): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [n, setN] = useState(0);
  const shown = useRef<string | null>(null);
  const version = live ? dataVersion.value : 0;
  useEffect(() => {
    const tok = token.peek();
    if (!tok || path === null) return;
    if (shown.current !== path) {
      // Another address: do not show the last one's data meanwhile.
      setData(null);
      setLoading(true);
    }
    const c = new AbortController();
    request<T>(path, tok, { signal: c.signal }).then(
      (v) => {
        if (c.signal.aborted) return;
        shown.current = path;
        setData(v);
        setError(null);
        setLoading(false);
        dataAt.value = Date.now();
      },
      (err: unknown) => {
        if (c.signal.aborted || (err instanceof DOMException && err.name === 'AbortError')) return;
        onApiError(err);
        setError(err);
        setLoading(false);
      },
    );
    return () => c.abort();
  }, [path, version, n]);
  return { data, error, loading, retry: () => setN((x) => x + 1) };
}
