// The real-time tile (issue 16): "current visitors" from the collector's GET /realtime, shown
// only when the site's config.json names a realtime_url (a stack with the collector); else the
// tile stays hidden. A failed fetch shows a dash, never an error over the whole page.
const REFRESH_MS = 30_000

export async function siteConfig(base) {
  try {
    const response = await fetch(new URL('config.json', base), { cache: 'no-cache' })
    return response.ok ? await response.json() : {}
  } catch {
    return {}
  }
}

export function startRealtime(node, config) {
  const url = config.realtime_url
  if (!url) {
    node.hidden = true
    return
  }
  node.hidden = false
  const value = node.querySelector('.value')
  const note = node.querySelector('.previous')
  const refresh = async () => {
    try {
      const response = await fetch(url, { cache: 'no-store' })
      if (!response.ok) throw new Error(`HTTP ${response.status}`)
      const answer = await response.json()
      value.textContent = Math.round(answer.visitors).toLocaleString('en-US')
      note.textContent = `last ${Math.round(answer.window_s / 60)} minutes, as of ${answer.as_of.slice(11, 19)} UTC`
      node.setAttribute('data-ready', 'true')
    } catch (error) {
      value.textContent = '—'
      note.textContent = `unavailable (${error.message ?? error})`
      node.setAttribute('data-ready', 'error')
    }
  }
  refresh()
  setInterval(refresh, REFRESH_MS)
}
