// Reading the rollups: the manifest names each day's files; each is a small Parquet file read
// whole with hyparquet (snappy is built in), so a view fetches only the days it shows.
import { parquetReadObjects } from 'hyparquet'

const cache = new Map()

/** The manifest (rollups/manifest.json, relative to the page). */
export async function loadManifest(base) {
  const response = await fetch(`${base}rollups/manifest.json`, { cache: 'no-cache' })
  if (!response.ok) throw new Error(`no rollups at ${base}rollups/manifest.json (${response.status}): run clickstream-etl rollup DEST`)
  return response.json()
}

function plain(row) {
  const out = {}
  for (const [key, value] of Object.entries(row)) out[key] = typeof value === 'bigint' ? Number(value) : value
  return out
}

async function readTable(base, key, table) {
  if (!cache.has(key)) {
    cache.set(key, (async () => {
      const response = await fetch(base + key)
      if (!response.ok) throw new Error(`could not read ${key} (${response.status})`)
      const file = await response.arrayBuffer()
      // The site table's visitors_hll is bytes: read BYTE_ARRAY columns without a UTF-8 annotation as bytes.
      const rows = await parquetReadObjects({ file, utf8: table !== 'site' })
      return rows.map(plain)
    })())
  }
  return cache.get(key)
}

/** The rows of `table` for every manifest day in [from, to] (ISO dates, inclusive). */
export async function loadRange(base, manifest, table, from, to) {
  const days = Object.keys(manifest.days).filter((day) => day >= from && day <= to).sort()
  const parts = await Promise.all(days.map((day) => readTable(base, manifest.days[day][table], table)))
  return parts.flat()
}
