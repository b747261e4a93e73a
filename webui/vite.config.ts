import { defineConfig } from 'vite';

// `spillway serve` serves the built app at / from the committed dist/ (see
// webui.go), so the build must not depend on the machine: no sourcemaps,
// content-hashed file names.
//
// `npm run dev` serves the sources with hot reload and passes /v1 (the API
// and its event stream) to a running `spillway serve`: $SPILLWAY_URL, or
// serve's default address.
// (Node's process, declared here: the app's tsconfig has no Node types.)
declare const process: { env: Record<string, string | undefined> };
const api = process.env.SPILLWAY_URL ?? 'http://127.0.0.1:8480';

export default defineConfig({
  base: '/',
  oxc: {
    jsx: { runtime: 'automatic', importSource: 'preact' },
  },
  server: {
    proxy: {
      '/v1': { target: api, changeOrigin: false },
    },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    target: 'es2022',
    cssCodeSplit: false,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
});
