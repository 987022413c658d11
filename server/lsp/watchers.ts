/**
 * The file watchers the server asks the client for. Analyses read imported Python files from disk,
 * so the server must hear when one changes: every Python file of the workspace, and of each extra
 * path (library code that is often outside the workspace, which a plain glob does not reach) when
 * the client accepts patterns relative to a folder.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { FileSystemWatcher } from 'vscode-languageserver';

export const PYTHON_FILES = '**/*.py';

export function pythonFileWatchers(extraPaths: readonly string[], relativePatterns: boolean): FileSystemWatcher[] {
  const watchers: FileSystemWatcher[] = [{ globPattern: PYTHON_FILES }];
  if (relativePatterns) for (const dir of extraPaths) watchers.push({ globPattern: { baseUri: pathToFileURL(resolve(dir)).toString(), pattern: PYTHON_FILES } });
  return watchers;
}
