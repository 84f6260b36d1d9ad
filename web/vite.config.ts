import { defineConfig } from 'vite';

// The Rust server embeds `dist/` and serves index.html for `/<room>` and the
// bundle under `/assets/`. Its Content-Security-Policy allows only same-origin
// scripts and styles, so nothing may be inlined into index.html.
export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: 'es2022',
    sourcemap: false,
  },
  // The media Worker (src/e2ee/worker.ts) is a module worker: it imports the
  // E2EE wasm glue like the main thread does.
  worker: { format: 'es' },
  server: {
    // `npm run dev` against a locally running server: `CONCLAVE_URL=http://127.0.0.1:8080 npm run dev`
    proxy: process.env.CONCLAVE_URL
      ? { '/ws': { target: process.env.CONCLAVE_URL.replace(/^http/, 'ws'), ws: true } }
      : undefined,
  },
});
