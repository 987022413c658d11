// What past runs measured, for the views that put a measurement beside an estimate (the language
// server's CodeLens and hover): each finished run folder (<home>/runs/<jobId>/) holds the spec and
// plan it trained (spec.json, plan.json) and its summary (summary.json, with the measured and the
// estimated speedup). Only small files are read, each once: a finished run's summary never changes.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface RunResult {
  jobId: string;
  /** Median dense step / median Pixelfly step, measured in the same run. */
  measuredSpeedup: number;
  estimatedSpeedup?: number;
  endedAt: number;
  /** Canonical JSON of the trained spec and of the plan's layer configs (runKey). */
  key: string;
}

const MAX_FILE_BYTES = 4 << 20;

function readJson(file: string): unknown {
  const st = statSync(file);
  if (st.size > MAX_FILE_BYTES) throw new Error('too large');
  return JSON.parse(readFileSync(file, 'utf8'));
}

/** JSON with sorted keys: two specs are the same spec whatever their key order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** What identifies a trained model: its spec (name aside) and which layers were Pixelfly with which configs. */
export function runKey(spec: Record<string, unknown>, plan: { layers: Array<{ name: string; sparsify: boolean; config?: unknown }> }): string {
  const { name: _name, ...rest } = spec;
  void _name;
  const layers = plan.layers.filter((l) => l.sparsify).map((l) => ({ name: l.name, config: l.config }));
  layers.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return canonical({ spec: rest, layers });
}

/** Finished runs' results under `runsDir`, read once per run (folders without a summary are looked at again later). */
export class RunResults {
  private readonly done = new Map<string, RunResult | null>();
  constructor(private readonly runsDir: () => string) {}

  /** The latest run of this spec and plan that measured a speedup. */
  latest(key: string): RunResult | undefined {
    let best: RunResult | undefined;
    for (const r of this.all()) if (r.key === key && (!best || r.endedAt > best.endedAt)) best = r;
    return best;
  }

  private all(): RunResult[] {
    const dir = this.runsDir();
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return [];
    }
    const out: RunResult[] = [];
    for (const jobId of names) {
      if (!this.done.has(jobId)) {
        const r = this.read(join(dir, jobId), jobId);
        if (r === undefined) continue; // not finished yet: looked at again next time
        this.done.set(jobId, r);
      }
      const r = this.done.get(jobId);
      if (r) out.push(r);
    }
    return out;
  }

  /** undefined: no summary yet; null: not a run with a measured speedup (or unreadable). */
  private read(folder: string, jobId: string): RunResult | null | undefined {
    let summary: { speedup?: unknown; estimatedSpeedup?: unknown };
    let ended: number;
    try {
      const file = join(folder, 'summary.json');
      ended = statSync(file).mtimeMs;
      summary = readJson(file) as typeof summary;
    } catch {
      return undefined;
    }
    try {
      if (typeof summary.speedup !== 'number') return null;
      const spec = readJson(join(folder, 'spec.json')) as Record<string, unknown>;
      const plan = readJson(join(folder, 'plan.json')) as Parameters<typeof runKey>[1];
      if (!plan || !Array.isArray(plan.layers) || !spec || typeof spec !== 'object') return null;
      return {
        jobId,
        measuredSpeedup: summary.speedup,
        ...(typeof summary.estimatedSpeedup === 'number' ? { estimatedSpeedup: summary.estimatedSpeedup } : {}),
        endedAt: ended,
        key: runKey(spec, plan),
      };
    } catch {
      return null;
    }
  }
}
