/**
 * The page side of the host↔page channel: typed posting, validated receiving, persisted state.
 * `acquireVsCodeApi` may be called only once per page, so every page goes through this module.
 */
import type { z } from 'zod';
import { parseFromHost } from '../../protocol/webview';

interface VsCodeApi<S> {
  postMessage(message: unknown): void;
  getState(): S | undefined;
  setState(state: S): void;
}

declare function acquireVsCodeApi<S>(): VsCodeApi<S>;

export interface PageChannel<ToHost, State> {
  post(message: ToHost): void;
  getState(): State | undefined;
  setState(state: State): void;
}

/**
 * Connects the page: messages from the host are validated with `schema` before `onMessage` sees
 * them; an invalid one is reported through `onError` (shown in the page) and otherwise ignored.
 */
export function connect<FromHost, ToHost, State>(
  schema: z.ZodType<FromHost>,
  onMessage: (m: FromHost) => void,
  onError: (e: Error) => void,
): PageChannel<ToHost, State> {
  const api = acquireVsCodeApi<State>();
  window.addEventListener('message', (ev: MessageEvent) => {
    let msg: FromHost;
    try {
      msg = parseFromHost(schema, ev.data);
    } catch (e) {
      onError(e as Error);
      return;
    }
    onMessage(msg);
  });
  return {
    post: (m) => api.postMessage(m),
    getState: () => api.getState(),
    setState: (s) => api.setState(s),
  };
}

/** Tiny DOM builder: keeps page code declarative without a framework (and without innerHTML). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<string, string>> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) if (v !== undefined) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

/** 1234567 → "1.23M": compact counts for params and FLOPs. */
export function compact(n: number): string {
  const a = Math.abs(n);
  if (a >= 1e12) return `${(n / 1e12).toFixed(2)}T`;
  if (a >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (a >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}
