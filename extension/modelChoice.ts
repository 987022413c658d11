/**
 * Which model of a file the hints, preview and runs use, where the file defines several: the
 * user's choice, kept per file in the workspace state (so it survives reloads) and told to the
 * language server, which decides what the file defines. No VS Code imports: unit-tested.
 */
import type { ChooseModelArgs, ModelCandidateInfo } from '../protocol/lsp';

const KEY = 'pixelfly.modelChoices';

/** The part of vscode.Memento this needs. */
export interface StateStore {
  get<T>(key: string): T | undefined;
  update(key: string, value: unknown): Thenable<void>;
}

export class ModelChoices {
  constructor(
    private readonly state: StateStore,
    /** Tells the language server (when it runs) about a change. */
    private readonly notify: (uri: string, model: string | null) => void,
  ) {}

  /** Every choice (document uri -> model): the server's initializationOptions.modelChoices. */
  all(): Record<string, string> {
    const v = this.state.get<unknown>(KEY);
    if (typeof v !== 'object' || v === null) return {};
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string'));
  }

  get(uri: string): string | undefined {
    return this.all()[uri];
  }

  /** Records the user's choice for a document (null forgets it: the default again) and tells the server. */
  async set(uri: string, model: string | null): Promise<void> {
    const next = this.all();
    if (model === null) delete next[uri];
    else next[uri] = model;
    await this.state.update(KEY, next);
    this.notify(uri, model);
  }
}

export interface ModelPickItem {
  label: string;
  description: string;
  /** The model it chooses. */
  model: string;
}

/** Quick pick items: the file's own models first (the others are parts of them), in file order. */
export function modelPickItems(args: Pick<ChooseModelArgs, 'current' | 'defaultModel' | 'models'>): ModelPickItem[] {
  const order = (m: ModelCandidateInfo) => (m.top ? 0 : 1);
  return [...args.models]
    .sort((a, b) => order(a) - order(b) || a.line - b.line)
    .map((m) => ({
      label: m.name,
      description: [
        m.kind === 'class' ? `class, line ${m.line}` : `function, line ${m.line}`,
        m.top ? '' : 'part of another model',
        m.name === args.defaultModel ? 'default' : '',
        m.name === args.current ? 'in use' : '',
      ]
        .filter(Boolean)
        .join(' · '),
      model: m.name,
    }));
}

/** A lens-shaped argument of pixelfly.chooseModel. */
export function isChooseModelArgs(v: unknown): v is ChooseModelArgs {
  const a = v as Partial<ChooseModelArgs> | undefined;
  return typeof a?.uri === 'string' && typeof a.current === 'string' && Array.isArray(a.models);
}
