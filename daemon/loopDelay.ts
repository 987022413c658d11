// How late the daemon's event loop runs, for `daemon.stats`: Node's timer-based histogram (a
// 10 ms timer; how much later than due each firing came). It runs only while someone measures: a
// `daemon.stats {resetEventLoop: true}` opens a window, later calls read it, and a window nobody
// renews closes by itself, so an idle daemon does not wake a hundred times a second for nothing.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

const RESOLUTION_MS = 10;
/** A window not renewed within this long stops the timer. */
const WINDOW_MS = 10 * 60_000;

export interface LoopDelayFigures {
  maxDelayMs: number;
  p99DelayMs: number;
  meanDelayMs: number;
  sinceMs: number;
}

export class LoopDelayMonitor {
  private histogram: IntervalHistogram | undefined;
  private since = 0;
  private expiry: NodeJS.Timeout | undefined;

  /** The current window's figures (undefined when none is open); `reset` then opens a new one. */
  read(reset: boolean): LoopDelayFigures | undefined {
    const figures = this.histogram && this.histogram.count > 0 ? this.figures(this.histogram) : undefined;
    if (reset) this.open();
    return figures;
  }

  stop(): void {
    this.histogram?.disable();
    this.histogram = undefined;
    clearTimeout(this.expiry);
  }

  private open(): void {
    this.histogram ??= monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    this.histogram.reset();
    this.histogram.enable();
    this.since = Date.now();
    clearTimeout(this.expiry);
    this.expiry = setTimeout(() => this.stop(), WINDOW_MS);
    this.expiry.unref();
  }

  private figures(h: IntervalHistogram): LoopDelayFigures {
    // The histogram holds each firing's whole interval (ns): the delay is what exceeds the resolution.
    const late = (ns: number) => Math.max(0, Math.round((ns / 1e6 - RESOLUTION_MS) * 10) / 10);
    return { maxDelayMs: late(h.max), p99DelayMs: late(h.percentile(99)), meanDelayMs: late(h.mean), sinceMs: Date.now() - this.since };
  }
}
