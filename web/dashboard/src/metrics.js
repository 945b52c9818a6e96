// Pure aggregation of rollup rows into the dashboard's figures (no DOM here).
import { estimate, mergeRegisters } from './hll.js'

export function sum(rows, field) {
  let total = 0
  for (const row of rows) total += row[field]
  return total
}

export function sourceLabel(row) {
  if (row.refr_source) return row.refr_source
  return row.refr_medium ? `(${row.refr_medium})` : '(direct)'
}

/** Totals of the site rows of a range; visitors merged from the daily sketches. */
export function siteTotals(site) {
  const visits = sum(site, 'visits')
  const visitors = site.length === 1
    ? site[0].visitors
    : Math.round(estimate(mergeRegisters(site.map((row) => row.visitors_hll))))
  return {
    visitors,
    visitorsEstimated: site.length > 1,
    visits,
    pageviews: sum(site, 'pageviews'),
    bounceRate: visits ? sum(site, 'bounces') / visits : 0,
    duration: visits ? sum(site, 'visit_duration_ms') / visits / 1000 : 0,
  }
}

/** Totals of the source rows matching `label`. */
export function sourceTotals(rows, label) {
  const mine = rows.filter((row) => sourceLabel(row) === label)
  const visits = sum(mine, 'visits')
  return {
    visitors: null,
    visits,
    pageviews: sum(mine, 'pageviews'),
    bounceRate: visits ? sum(mine, 'bounces') / visits : 0,
    duration: visits ? sum(mine, 'visit_duration_ms') / visits / 1000 : 0,
  }
}

/** Totals of the page rows of `page`. */
export function pageTotals(rows, page) {
  const mine = rows.filter((row) => row.page === page)
  return { pageviews: sum(mine, 'pageviews'), entries: sum(mine, 'entries'), exits: sum(mine, 'exits') }
}

/** Rows grouped by `keyOf`, `fields` summed, sorted by the first field (descending) then key. */
export function groupBy(rows, keyOf, fields) {
  const groups = new Map()
  for (const row of rows) {
    const key = keyOf(row)
    const group = groups.get(key) ?? Object.fromEntries([['key', key], ...fields.map((f) => [f, 0])])
    for (const f of fields) group[f] += row[f]
    groups.set(key, group)
  }
  return [...groups.values()].sort((a, b) => b[fields[0]] - a[fields[0]] || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
}

/** The ISO dates from `from` to `to` inclusive. */
export function daysBetween(from, to) {
  const out = []
  for (let day = new Date(`${from}T00:00:00Z`); day <= new Date(`${to}T00:00:00Z`); day.setUTCDate(day.getUTCDate() + 1)) {
    out.push(day.toISOString().slice(0, 10))
  }
  return out
}

export function shiftDays(iso, days) {
  const day = new Date(`${iso}T00:00:00Z`)
  day.setUTCDate(day.getUTCDate() + days)
  return day.toISOString().slice(0, 10)
}

/** The period of the same length just before [from, to]. */
export function previousPeriod(from, to) {
  const length = daysBetween(from, to).length
  return { from: shiftDays(from, -length), to: shiftDays(from, -1) }
}
