/**
 * Which open documents depend on which files: the reverse of each document's last analysis's
 * `dependencies` and `missingImports`. An analysis follows imports into other files, so an edit,
 * save, deletion or creation of one file must re-analyse every document that read it (or looked
 * for it), not only the file's own document.
 */
export class Dependents {
  /** File path → URIs of open documents whose last analysis read it or looked for it. */
  private readonly byFile = new Map<string, Set<string>>();
  /** Document URI → the paths recorded for it (to drop them when it is re-analysed or closed). */
  private readonly byDocument = new Map<string, string[]>();

  /** Replace what a document depends on with the files its newest analysis read or looked for. */
  record(uri: string, paths: readonly string[]): void {
    this.remove(uri);
    this.byDocument.set(uri, [...paths]);
    for (const p of paths) {
      let uris = this.byFile.get(p);
      if (!uris) this.byFile.set(p, (uris = new Set()));
      uris.add(uri);
    }
  }

  remove(uri: string): void {
    for (const p of this.byDocument.get(uri) ?? []) {
      const uris = this.byFile.get(p);
      uris?.delete(uri);
      if (uris?.size === 0) this.byFile.delete(p);
    }
    this.byDocument.delete(uri);
  }

  of(path: string): string[] {
    return [...(this.byFile.get(path) ?? [])];
  }
}
