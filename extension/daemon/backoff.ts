/**
 * Reconnect delays: exponential from `baseMs`, capped at `maxMs`, with ±`jitter` so several VS Code
 * windows that lost the same daemon do not reconnect in lock-step. Reset after a good connection.
 */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  /** 0..1: fraction of the delay randomised. */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 15000, jitter: 0.2 };

export class Backoff {
  private attempt = 0;
  constructor(
    private readonly opts: BackoffOptions = DEFAULT_BACKOFF,
    private readonly random: () => number = Math.random,
  ) {}

  /** Delay before the next attempt, then counts the attempt. */
  next(): number {
    const raw = Math.min(this.opts.maxMs, this.opts.baseMs * 2 ** this.attempt);
    this.attempt++;
    const j = raw * this.opts.jitter * (2 * this.random() - 1);
    return Math.max(0, Math.round(raw + j));
  }

  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}
