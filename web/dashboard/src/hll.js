// HyperLogLog over the daily registers of the site rollup (load/rollup.py writes them):
// merge = element-wise maximum; estimate = the standard estimator with the small-range
// (linear counting) correction, exactly as load.rollup.hll_estimate computes it.

/** The element-wise maximum of equally long register arrays (Uint8Array each). */
export function mergeRegisters(sketches) {
  if (sketches.length === 0) return new Uint8Array(0)
  const merged = new Uint8Array(sketches[0].length)
  for (const sketch of sketches) {
    for (let i = 0; i < merged.length; i++) if (sketch[i] > merged[i]) merged[i] = sketch[i]
  }
  return merged
}

/** The distinct count estimated from `registers` (0 for none). */
export function estimate(registers) {
  const m = registers.length
  if (m === 0) return 0
  const alpha = 0.7213 / (1 + 1.079 / m)
  let sum = 0
  let zeros = 0
  for (const r of registers) {
    sum += 2 ** -r
    if (r === 0) zeros++
  }
  const raw = (alpha * m * m) / sum
  if (raw <= 2.5 * m && zeros > 0) return m * Math.log(m / zeros)
  return raw
}
