// Percentiles shared by the Node pieces of bench/side_by_side.py (nearest rank, in ms).
export const nowMs = () => performance.timeOrigin + performance.now();

export function percentiles(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
  const r = (x) => Math.round(x * 100) / 100;
  return { n: s.length, p50: r(at(0.5)), p99: r(at(0.99)), max: r(s[s.length - 1]) };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
