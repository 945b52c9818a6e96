// Build the dashboard into the Python package's data (pipeline/app/dashboard_site/): one
// bundled, minified app.js (hyparquet inlined), app.css and index.html.  Deterministic: no
// timestamps, no source maps with absolute paths, so the committed bundle can be compared with a
// fresh build (tests/unit/test_rollup_dashboard_bundle.py).
import { build } from 'esbuild'
import { copyFileSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const out = process.env.DASHBOARD_OUT || join(here, '..', '..', 'pipeline', 'app', 'dashboard_site')
mkdirSync(out, { recursive: true })
await build({
  entryPoints: [join(here, 'src', 'main.js')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  legalComments: 'eof',
  outfile: join(out, 'app.js'),
  logLevel: 'warning',
})
for (const name of ['index.html', 'app.css']) copyFileSync(join(here, 'src', name), join(out, name))
