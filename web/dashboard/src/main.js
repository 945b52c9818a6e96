// The dashboard: state in the URL's hash (from, to, page, source, compare), figures from the
// rollups of the chosen days, rendered as plain DOM (every figure is text a test can read).
import { loadManifest, loadRange } from './data.js'
import { siteConfig, startRealtime } from './realtime.js'
import { daysBetween, groupBy, pageTotals, previousPeriod, shiftDays, siteTotals, sourceLabel, sourceTotals, sum } from './metrics.js'

const BASE = new URL('.', document.baseURI).href
const $ = (selector) => document.querySelector(selector)
const number = (n) => (n === null || n === undefined ? '—' : Math.round(n).toLocaleString('en-US'))
const percent = (r) => `${(r * 100).toFixed(1)}%`
function duration(seconds) {
  const s = Math.round(seconds)
  return s >= 60 ? `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s` : `${s}s`
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'onclick') node.addEventListener('click', value)
    else node.setAttribute(name, value)
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child))
  return node
}

function readState(manifest) {
  const params = new URLSearchParams(location.hash.slice(1))
  const days = Object.keys(manifest.days).sort()
  const last = days.at(-1) ?? new Date().toISOString().slice(0, 10)
  const to = params.get('to') || last
  // Default: the last 30 days, from the first day with data if that is later.
  const monthBefore = shiftDays(to, -29)
  const from = params.get('from') || (days[0] && days[0] > monthBefore ? days[0] : monthBefore)
  return { from, to, page: params.get('page') || '', source: params.get('source') || '', compare: params.get('compare') !== '0' }
}

function writeState(state) {
  const params = new URLSearchParams()
  params.set('from', state.from)
  params.set('to', state.to)
  if (state.page) params.set('page', state.page)
  if (state.source) params.set('source', state.source)
  if (!state.compare) params.set('compare', '0')
  location.hash = params.toString()
}

async function figures(manifest, from, to, state) {
  const [site, pages, sources, technology, hourly] = await Promise.all(
    ['site', 'pages', 'sources', 'technology', 'hourly'].map((t) => loadRange(BASE, manifest, t, from, to)),
  )
  let totals
  if (state.page) {
    const p = pageTotals(pages, state.page)
    totals = { visitors: null, visits: p.entries, pageviews: p.pageviews, bounceRate: null, duration: null, exits: p.exits }
  } else if (state.source) {
    totals = sourceTotals(sources, state.source)
  } else {
    totals = siteTotals(site)
  }
  return { site, pages, sources, technology, hourly, totals }
}

function tile(metric, label, value, previous, format, state, previousDays) {
  const shown = value === null || value === undefined ? '—' : format(value)
  const node = el('div', { class: 'tile', 'data-metric': metric }, el('div', { class: 'label' }, label), el('div', { class: 'value' }, shown))
  if (state.compare && previousDays === 0) {
    node.append(el('div', { class: 'previous' }, 'previous period: no data'))
  } else if (state.compare && previous !== null && previous !== undefined && value !== null && value !== undefined) {
    const change = previous ? (value - previous) / previous : null
    const text = change === null ? 'new' : `${change >= 0 ? '+' : ''}${(change * 100).toFixed(1)}%`
    node.append(el('div', { class: 'previous' }, `previous ${format(previous)} (${text})`))
  }
  return node
}

function chart(points) {
  const width = 900
  const height = 180
  const max = Math.max(1, ...points.map((p) => p.value))
  const step = points.length > 1 ? width / (points.length - 1) : 0
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg')
  svg.setAttribute('viewBox', `-10 -10 ${width + 20} ${height + 30}`)
  svg.setAttribute('class', 'chart')
  const xy = points.map((p, i) => [i * step, height - (p.value / max) * height])
  const line = document.createElementNS(svg.namespaceURI, 'polyline')
  line.setAttribute('points', xy.map(([x, y]) => `${x},${y}`).join(' '))
  svg.append(line)
  points.forEach((p, i) => {
    const dot = document.createElementNS(svg.namespaceURI, 'circle')
    dot.setAttribute('cx', xy[i][0])
    dot.setAttribute('cy', xy[i][1])
    dot.setAttribute('r', 3)
    dot.setAttribute('data-label', p.label)
    dot.setAttribute('data-value', p.value)
    const title = document.createElementNS(svg.namespaceURI, 'title')
    title.textContent = `${p.label}: ${number(p.value)}`
    dot.append(title)
    svg.append(dot)
  })
  return svg
}

function table(id, title, headers, rows, onPick) {
  const body = el('tbody')
  for (const row of rows) {
    const tr = el('tr', onPick ? { class: 'pick', onclick: () => onPick(row[0]) } : {}, ...row.map((cell) => el('td', {}, cell)))
    body.append(tr)
  }
  return el('section', { class: 'panel', id },
    el('h2', {}, title),
    el('table', {}, el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', {}, h)))), body))
}

async function render(manifest) {
  const state = readState(manifest)
  $('#from').value = state.from
  $('#to').value = state.to
  $('#compare').checked = state.compare
  const previous = previousPeriod(state.from, state.to)
  const [now, before] = await Promise.all([
    figures(manifest, state.from, state.to, state),
    state.compare ? figures(manifest, previous.from, previous.to, state) : Promise.resolve(null),
  ])
  const t = now.totals
  const b = before?.totals ?? {}
  const filter = $('#filter')
  filter.replaceChildren()
  if (state.page || state.source) {
    const what = state.page ? `page ${state.page}` : `source ${state.source}`
    filter.append(el('span', { class: 'chip', 'data-filter': what }, `filtered by ${what}`),
      el('button', { id: 'clear-filter', onclick: () => writeState({ ...state, page: '', source: '' }) }, 'clear'))
  }
  const tiles = $('#tiles')
  tiles.replaceChildren(
    tile('visitors', state.page || state.source ? 'Visitors (not kept per page or source)' : now.site.length > 1 ? 'Unique visitors (estimate)' : 'Unique visitors', t.visitors, b.visitors, number, state, before?.site.length),
    tile('visits', state.page ? 'Entries' : 'Visits', t.visits, b.visits, number, state, before?.site.length),
    tile('pageviews', 'Page views', t.pageviews, b.pageviews, number, state, before?.site.length),
    tile('bounce_rate', 'Bounce rate', t.bounceRate, b.bounceRate, percent, state, before?.site.length),
    tile('visit_duration', 'Visit duration', t.duration, b.duration, duration, state, before?.site.length),
  )
  // The time series: page views per day, or per hour when one day is shown.
  let points
  const oneDay = state.from === state.to
  if (state.page) {
    points = daysBetween(state.from, state.to).map((day) => ({ label: day, value: sum(now.pages.filter((r) => r.date === day && r.page === state.page), 'pageviews') }))
  } else if (state.source) {
    points = daysBetween(state.from, state.to).map((day) => ({ label: day, value: sum(now.sources.filter((r) => r.date === day && sourceLabel(r) === state.source), 'pageviews') }))
  } else if (oneDay) {
    points = [...Array(24).keys()].map((hour) => ({ label: `${String(hour).padStart(2, '0')}:00`, value: sum(now.hourly.filter((r) => r.hour === hour), 'pageviews') }))
  } else {
    points = daysBetween(state.from, state.to).map((day) => ({ label: day, value: sum(now.site.filter((r) => r.date === day), 'pageviews') }))
  }
  $('#series').replaceChildren(el('h2', {}, oneDay && !state.page && !state.source ? 'Page views by hour' : 'Page views by day'), chart(points))

  const pages = groupBy(now.pages, (r) => r.page, ['pageviews', 'entries', 'exits']).slice(0, 20)
  const sources = groupBy(now.sources, sourceLabel, ['visits', 'pageviews', 'bounces'])
  const campaigns = groupBy(now.sources.filter((r) => r.mkt_campaign), (r) => `${r.mkt_campaign} · ${r.mkt_source || '-'} / ${r.mkt_medium || '-'}`, ['visits', 'pageviews'])
  const tech = (field) => groupBy(now.technology, (r) => r[field] || '(unknown)', ['visits', 'pageviews'])
  const pick = (key) => (value) => writeState({ ...state, page: '', source: '', [key]: value })
  $('#tables').replaceChildren(
    table('pages', 'Top pages', ['Page', 'Views', 'Entries', 'Exits'], pages.map((r) => [r.key, number(r.pageviews), number(r.entries), number(r.exits)]), pick('page')),
    table('sources', 'Sources', ['Source', 'Visits', 'Page views', 'Bounce rate'], sources.map((r) => [r.key, number(r.visits), number(r.pageviews), percent(r.visits ? r.bounces / r.visits : 0)]), pick('source')),
    table('campaigns', 'Campaigns (utm)', ['Campaign · source / medium', 'Visits', 'Page views'], campaigns.map((r) => [r.key, number(r.visits), number(r.pageviews)])),
    table('devices', 'Devices', ['Device', 'Visits'], tech('dvce_type').map((r) => [r.key, number(r.visits)])),
    table('browsers', 'Browsers', ['Browser', 'Visits'], tech('br_family').map((r) => [r.key, number(r.visits)])),
    table('os', 'Operating systems', ['OS', 'Visits'], tech('os_family').map((r) => [r.key, number(r.visits)])),
  )
  $('#status').textContent = `${now.site.length} day(s) of rollups shown, ${state.from} to ${state.to}` +
    (now.site.length > 1 ? `; unique visitors are a HyperLogLog estimate (±${(manifest.hll_error_bound * 100).toFixed(1)}%)` : '')
  document.body.setAttribute('data-ready', `${state.from}..${state.to}|${state.page}|${state.source}|${state.compare}`)
}

async function main() {
  siteConfig(BASE).then((config) => startRealtime($('#realtime'), config))
  let manifest
  try {
    manifest = await loadManifest(BASE)
  } catch (error) {
    $('#status').textContent = String(error.message ?? error)
    document.body.setAttribute('data-ready', 'error')
    return
  }
  const apply = () => {
    const state = readState(manifest)
    writeState({ ...state, from: $('#from').value || state.from, to: $('#to').value || state.to, compare: $('#compare').checked })
  }
  $('#from').addEventListener('change', apply)
  $('#to').addEventListener('change', apply)
  $('#compare').addEventListener('change', apply)
  for (const button of document.querySelectorAll('[data-preset]')) {
    button.addEventListener('click', () => {
      const state = readState(manifest)
      const days = Object.keys(manifest.days).sort()
      const to = days.at(-1) ?? state.to
      const from = button.dataset.preset === 'all' ? (days[0] ?? to) : shiftDays(to, 1 - Number(button.dataset.preset))
      writeState({ ...state, from, to })
    })
  }
  const safeRender = () => render(manifest).catch((error) => {
    $('#status').textContent = String(error.message ?? error)
    document.body.setAttribute('data-ready', 'error')
  })
  window.addEventListener('hashchange', safeRender)
  await safeRender()
}

main()
