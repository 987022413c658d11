// A test-corpus model pinned the way a user pins their own: a `# pixelfly:` line of sizes at the top.
import { readFileSync, writeFileSync } from 'node:fs';

/** Puts `# pixelfly: PINS` first in `file`, in place of any pins line it had (minGPT's copy pins model_type=gpt-mini). */
export function pinModelFile(file: string, pins: string): void {
  const source = readFileSync(file, 'utf8').replace(/^# pixelfly: .*$/m, '');
  writeFileSync(file, `# pixelfly: ${pins}\n${source}`);
}
