// Bundles the tracker and the page script into dist/ (CI runs `npm ci && npm run build`; the
// browser test serves dist/). The bundle is built, never committed (.gitignore).
import { copyFileSync, mkdirSync } from 'node:fs';
import { build } from 'esbuild';

mkdirSync('dist', { recursive: true });
await build({
  entryPoints: ['src/page.js'],
  bundle: true,
  format: 'iife',
  target: ['chrome100'],
  outfile: 'dist/tracker-page.js',
  logLevel: 'warning',
});
copyFileSync('src/index.html', 'dist/index.html');
