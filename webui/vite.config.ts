import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// The console is served by the appliance at `/` with bundles under `/assets/` (see
// control/src/api/console.rs); `npm run dev` proxies the API to a running server.
const api = process.env.SEPTA_API ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [svelte()],
  base: '/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    // dist/README.md stays (it keeps the folder for rust-embed); npm run build clears the rest.
    emptyOutDir: false,
    target: 'es2022',
    sourcemap: false,
    modulePreload: { polyfill: false },
  },
  server: {
    proxy: { '/api': api, '/healthz': api, '/readyz': api },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
