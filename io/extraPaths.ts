// pixelfly.analysis.extraPaths as folders: a relative one is read from the first workspace folder.
// The language server's analysis and the extension's PyTorch runner both resolve the setting here,
// so the model the hints read is the model that trains.
import { isAbsolute, join } from 'node:path';

export function resolveExtraPaths(paths: readonly string[], workspaceRoots: readonly string[]): string[] {
  const root = workspaceRoots[0];
  return paths.map((p) => (isAbsolute(p) || root === undefined ? p : join(root, p)));
}
