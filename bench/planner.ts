// `npm run bench:planner -- [--out FILE]`: how long the planner takes on large inventories.
// Prints a table and writes JSON rows {layers, distinct_shapes, target, median_ms, runs}.
import { writeFileSync } from 'node:fs';
import { planModel, type PlanTarget } from '../core/planner';
import type { Inventory, InventoryLayer, LayerRole } from '../core/inventory';
import { median } from '../core/stats';

// Transformer-like widths; a 1000-layer inventory cycles through `distinctShapes` (in, out) pairs.
const DIMS = [256, 384, 512, 640, 768, 1024, 1280, 1536, 2048, 2560, 3072, 4096, 5120, 6144, 8192];

function inventory(n: number, distinctShapes: number): Inventory {
  const roles: LayerRole[] = ['attn_qkv', 'attn_out', 'mlp_fc1', 'mlp_fc2'];
  const layers: InventoryLayer[] = [];
  for (let i = 0; i < n; i++) {
    const s = i % distinctShapes;
    const a = DIMS[s % DIMS.length];
    const b = DIMS[Math.floor(s / DIMS.length) % DIMS.length];
    layers.push({ name: `l${i}`, role: roles[i % 4], in: a, out: b, count: 1, rowsPerSample: 512 });
  }
  return { layers };
}

const outIndex = process.argv.indexOf('--out');
const outFile = outIndex > 0 ? process.argv[outIndex + 1] : undefined;
const rows: Record<string, unknown>[] = [];
for (const distinct of [12, 60, DIMS.length ** 2]) {
  for (const target of [{ budget: 0.3 }, { speedup: 2 }] as PlanTarget[]) {
    const inv = inventory(1000, distinct);
    const times: number[] = [];
    for (let run = 0; run < 7; run++) {
      const t0 = performance.now();
      planModel(inv, target);
      times.push(performance.now() - t0);
    }
    rows.push({ layers: 1000, distinct_shapes: distinct, target: JSON.stringify(target), median_ms: +median(times).toFixed(2), runs: times.length });
  }
}
console.log('layers  distinct shapes  target              median ms');
for (const r of rows) console.log(`${String(r.layers).padEnd(8)}${String(r.distinct_shapes).padEnd(17)}${String(r.target).padEnd(20)}${r.median_ms}`);
if (outFile) writeFileSync(outFile, JSON.stringify(rows, null, 2) + '\n');
