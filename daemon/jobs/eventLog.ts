// A job's numbered event stream, persisted as append-only JSON lines (metrics.jsonl).
// Events are buffered in memory for at most `flushMs` and then appended with one write, so a
// kill -9 loses at most that window. Readers (subscribers replaying from a sequence number) read
// recent events from a small in-memory tail and older ones from the file through a sparse offset
// index, so memory stays bounded however long the run and however far behind a reader is.
// A log that is not being written (a finished run) holds no file descriptor and no tail: the
// daemon can keep thousands of past runs.
// A write that fails (a full disk, no file descriptor left) never throws out of a timer: the
// events stay queued (and are still served to subscribers), the failure goes to the write-error
// listeners (the job manager ends the job with it), and the next flush tries again.
import { closeSync, existsSync, fdatasyncSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import type { JobEvent, JobEventBody } from '../../protocol/daemon';

/** One file offset is remembered every INDEX_STRIDE events. */
const INDEX_STRIDE = 256;
/** Events kept in memory for readers that are (nearly) live. */
const TAIL_SIZE = 1024;
const READ_CHUNK_BYTES = 256 * 1024;

export type EventListener = (event: JobEvent) => void;

export class EventLog {
  /** Open while the log is written to; -1 for an idle log (reads then open the file briefly). */
  private fd: number;
  private closed = false;
  private lastSeqValue = 0;
  private fileBytes = 0;
  /** offsets[k] = byte offset of the line holding seq k*INDEX_STRIDE + 1. */
  private readonly offsets: number[] = [];
  private pending: string[] = [];
  private tail: JobEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<EventListener>();
  private readonly errorListeners = new Set<(err: Error) => void>();
  /** The last flush's failure, until a flush succeeds. */
  writeError: Error | undefined;

  /**
   * Opens (or creates) the log. A line cut short by a crash is truncated away; every complete
   * line is kept and numbering continues after the last one.
   */
  constructor(
    readonly file: string,
    readonly jobId: string,
    private readonly flushMs = 250,
  ) {
    const existed = existsSync(file);
    this.fd = openSync(file, existed ? 'r+' : 'w+');
    if (existed) this.recover();
  }

  private writable(): number {
    if (this.fd < 0) this.fd = openSync(this.file, 'r+');
    return this.fd;
  }

  /** Flushes and lets go of the file and the tail until the next append (a run that has ended). */
  release(): void {
    // Events that cannot be written (a full disk) stay queued, and the tail with them.
    if (!this.flush()) return;
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    this.tail = [];
  }

  get lastSeq(): number {
    return this.lastSeqValue;
  }

  onAppend(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Told when a flush fails (the events stay queued). */
  onWriteError(listener: (err: Error) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  /** Numbers the event, queues it for the file and tells listeners. */
  append(body: JobEventBody): JobEvent {
    const event = { ...body, jobId: this.jobId, seq: this.lastSeqValue + 1, t: Date.now() } as JobEvent;
    this.lastSeqValue = event.seq;
    this.pending.push(JSON.stringify(event) + '\n');
    this.tail.push(event);
    if (this.tail.length > TAIL_SIZE * 2) this.tail = this.tail.slice(-TAIL_SIZE);
    if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), this.flushMs);
    }
    for (const l of this.listeners) l(event);
    return event;
  }

  /**
   * Writes every queued event to the file now (also called on state changes and shutdown); returns
   * false when that failed (see writeError).
   */
  flush(): boolean {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.pending.length === 0 || this.closed) return true;
    const firstSeq = this.lastSeqValue - this.pending.length + 1;
    let offset = this.fileBytes;
    const starts: Array<[number, number]> = [];
    const parts: Buffer[] = [];
    this.pending.forEach((line, i) => {
      const seq = firstSeq + i;
      if ((seq - 1) % INDEX_STRIDE === 0) starts.push([(seq - 1) / INDEX_STRIDE, offset]);
      const buf = Buffer.from(line, 'utf8');
      parts.push(buf);
      offset += buf.length;
    });
    const data = Buffer.concat(parts);
    try {
      const fd = this.writable();
      // At explicit offsets: after a failed attempt the next one writes over its partial bytes.
      let written = 0;
      while (written < data.length) written += writeSync(fd, data, written, data.length - written, this.fileBytes + written);
    } catch (err) {
      this.writeError = err as Error;
      for (const l of this.errorListeners) l(err as Error);
      return false;
    }
    for (const [k, at] of starts) this.offsets[k] = at;
    this.fileBytes = offset;
    this.pending = [];
    this.writeError = undefined;
    return true;
  }

  /** Flushes and makes what is written durable (before a checkpoint is recorded); throws when that fails. */
  sync(): void {
    if (!this.flush()) throw this.writeError;
    if (this.fd >= 0) fdatasyncSync(this.fd);
  }

  /** Up to `max` events with seq > fromSeq, in order. */
  read(fromSeq: number, max: number): JobEvent[] {
    if (fromSeq >= this.lastSeqValue) return [];
    const tailStart = this.tail.length > 0 ? this.tail[0].seq : this.lastSeqValue + 1;
    if (fromSeq + 1 >= tailStart) {
      const from = fromSeq + 1 - tailStart;
      return this.tail.slice(from, from + max);
    }
    this.flush();
    return this.readFile(fromSeq, max);
  }

  /** Final: flushes and closes; later appends are kept in memory only (the process is exiting). */
  close(): void {
    this.release();
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    this.closed = true;
    this.listeners.clear();
    this.errorListeners.clear();
  }

  private readFile(fromSeq: number, max: number): JobEvent[] {
    const fd = this.fd >= 0 ? this.fd : openSync(this.file, 'r');
    try {
      return this.readFrom(fd, fromSeq, max);
    } finally {
      if (fd !== this.fd) closeSync(fd);
    }
  }

  private readFrom(fd: number, fromSeq: number, max: number): JobEvent[] {
    const k = Math.min(Math.floor(fromSeq / INDEX_STRIDE), this.offsets.length - 1);
    let position = this.offsets[k] ?? 0;
    const out: JobEvent[] = [];
    const buf = Buffer.alloc(READ_CHUNK_BYTES);
    // Lines are split on bytes, never inside a chunk's text: a multi-byte character may straddle chunks.
    let carry = Buffer.alloc(0);
    while (out.length < max && position < this.fileBytes) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, this.fileBytes - position), position);
      if (n <= 0) break;
      position += n;
      const chunk = carry.length > 0 ? Buffer.concat([carry, buf.subarray(0, n)]) : buf.subarray(0, n);
      let from = 0;
      for (let nl = chunk.indexOf(10, from); nl >= 0 && out.length < max; nl = chunk.indexOf(10, from)) {
        const event = parseLine(chunk.toString('utf8', from, nl));
        if (event && event.seq > fromSeq) out.push(event);
        from = nl + 1;
      }
      carry = Buffer.from(chunk.subarray(from));
    }
    return out;
  }

  private recover(): void {
    const size = fstatSync(this.fd).size;
    let position = 0;
    let carry = Buffer.alloc(0);
    let lineStart = 0;
    const buf = Buffer.alloc(READ_CHUNK_BYTES);
    let seq = 0;
    let lastComplete = 0;
    while (position < size) {
      const n = readSync(this.fd, buf, 0, Math.min(buf.length, size - position), position);
      if (n <= 0) break;
      const chunk = carry.length > 0 ? Buffer.concat([carry, buf.subarray(0, n)]) : buf.subarray(0, n);
      const chunkStart = position - carry.length;
      position += n;
      let from = 0;
      for (let nl = chunk.indexOf(10, from); nl >= 0; nl = chunk.indexOf(10, from)) {
        lineStart = chunkStart + from;
        const event = parseLine(chunk.toString('utf8', from, nl));
        if (event) {
          seq = event.seq;
          if ((seq - 1) % INDEX_STRIDE === 0) this.offsets[(seq - 1) / INDEX_STRIDE] = lineStart;
        }
        from = nl + 1;
        lastComplete = chunkStart + from;
      }
      carry = Buffer.from(chunk.subarray(from));
    }
    // Whatever follows the last newline was being written when the process died.
    if (lastComplete < size) ftruncateSync(this.fd, lastComplete);
    this.fileBytes = lastComplete;
    this.lastSeqValue = seq;
  }
}

/**
 * Every complete event of a log file, read-only and in bounded chunks (a helper process reads a
 * run's log this way while the daemon may still hold it open for writing).
 */
export function* readEventsFile(file: string): Generator<JobEvent> {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(READ_CHUNK_BYTES);
    let carry = Buffer.alloc(0);
    for (let position = 0; ; ) {
      const n = readSync(fd, buf, 0, buf.length, position);
      if (n <= 0) return;
      position += n;
      const chunk = carry.length > 0 ? Buffer.concat([carry, buf.subarray(0, n)]) : buf.subarray(0, n);
      let from = 0;
      for (let nl = chunk.indexOf(10, from); nl >= 0; nl = chunk.indexOf(10, from)) {
        const event = parseLine(chunk.toString('utf8', from, nl));
        if (event) yield event;
        from = nl + 1;
      }
      carry = Buffer.from(chunk.subarray(from));
    }
  } finally {
    closeSync(fd);
  }
}

function parseLine(line: string): JobEvent | undefined {
  if (line.length === 0) return undefined;
  try {
    const value = JSON.parse(line) as JobEvent;
    return typeof value === 'object' && value !== null && Number.isInteger(value.seq) ? value : undefined;
  } catch {
    return undefined;
  }
}
