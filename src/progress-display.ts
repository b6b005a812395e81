// Progress of a long transfer (put, get, hydrate), in blocks and bytes, on stderr:
// a cli-progress bar on a terminal, a plain line every few seconds otherwise (logs,
// CI, pipes), nothing with `quiet`. The API is three calls so any command can
// drive it: start(totals), tick(increments), done().
// Rate and ETA come from bytes done, which the caller defines (put: image bytes
// read, get: bytes of stored blocks handled), so a display can show any transfer.
import cliProgress from 'cli-progress';
import { formatSize } from './size.js';

export interface ProgressDisplay {
  /** Totals; 0 means unknown (stdin): the display then shows what is done only. */
  start(totalBlocks: number, totalBytes: number): void;
  /** Adds to what is done. */
  tick(blocks: number, bytes: number): void;
  /** Stops the display (leaves the bar's last state on a terminal). */
  done(): void;
}

export interface ProgressOptions {
  readonly quiet?: boolean;
  /** Default process.stderr; its isTTY picks the bar or the plain lines. */
  readonly stream?: NodeJS.WriteStream;
  /** Plain mode: at most one line per this many ms. */
  readonly intervalMs?: number;
}

export function progressDisplay(label: string, opts: ProgressOptions = {}): ProgressDisplay {
  if (opts.quiet) return { start() {}, tick() {}, done() {} };
  const stream = opts.stream ?? process.stderr;
  return stream.isTTY ? new BarDisplay(label, stream) : new LineDisplay(label, stream, opts.intervalMs ?? 5000);
}

/** Counts, rate and ETA shared by both displays. */
class Tally {
  totalBlocks = 0;
  totalBytes = 0;
  blocks = 0;
  bytes = 0;
  #started = Date.now();

  start(totalBlocks: number, totalBytes: number): void {
    this.totalBlocks = totalBlocks;
    this.totalBytes = totalBytes;
    this.#started = Date.now();
  }

  /** Decimal MB/s, like the benchmark's figures. */
  rate(): number {
    const s = (Date.now() - this.#started) / 1000;
    return s > 0 ? this.bytes / 1e6 / s : 0;
  }

  eta(): string {
    const rate = this.rate();
    if (this.totalBytes === 0 || rate <= 0) return '?';
    return seconds(Math.max(0, (this.totalBytes - this.bytes) / 1e6 / rate));
  }

  line(): string {
    const blocks = this.totalBlocks > 0 ? `${this.blocks}/${this.totalBlocks}` : `${this.blocks}`;
    const bytes = this.totalBytes > 0 ? `${formatSize(this.bytes)} of ${formatSize(this.totalBytes)}` : formatSize(this.bytes);
    return `${blocks} blocks, ${bytes}, ${this.rate().toFixed(1)} MB/s, ETA ${this.eta()}`;
  }
}

function seconds(s: number): string {
  if (s < 60) return `${Math.ceil(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.ceil(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

class BarDisplay implements ProgressDisplay {
  #tally = new Tally();
  #bar: cliProgress.SingleBar;
  #label: string;

  constructor(label: string, stream: NodeJS.WriteStream) {
    this.#label = label;
    this.#bar = new cliProgress.SingleBar(
      { stream, format: '{label} [{bar}] {percentage}% | {detail}', hideCursor: true, clearOnComplete: false, fps: 5 },
      cliProgress.Presets.shades_classic,
    );
  }

  start(totalBlocks: number, totalBytes: number): void {
    this.#tally.start(totalBlocks, totalBytes);
    this.#bar.start(Math.max(1, totalBlocks), 0, { label: this.#label, detail: this.#tally.line() });
  }

  tick(blocks: number, bytes: number): void {
    this.#tally.blocks += blocks;
    this.#tally.bytes += bytes;
    this.#bar.update(this.#tally.blocks, { detail: this.#tally.line() });
  }

  done(): void {
    this.#bar.update(this.#tally.blocks, { detail: this.#tally.line() });
    this.#bar.stop();
  }
}

class LineDisplay implements ProgressDisplay {
  #tally = new Tally();
  #label: string;
  #stream: NodeJS.WriteStream;
  #timer: NodeJS.Timeout | undefined;
  #intervalMs: number;

  constructor(label: string, stream: NodeJS.WriteStream, intervalMs: number) {
    this.#label = label;
    this.#stream = stream;
    this.#intervalMs = intervalMs;
  }

  start(totalBlocks: number, totalBytes: number): void {
    this.#tally.start(totalBlocks, totalBytes);
    // A timer, not a check in tick(): a stalled transfer must still say where it is.
    this.#timer = setInterval(() => this.#stream.write(`${this.#label}: ${this.#tally.line()}\n`), this.#intervalMs);
    this.#timer.unref();
  }

  tick(blocks: number, bytes: number): void {
    this.#tally.blocks += blocks;
    this.#tally.bytes += bytes;
  }

  done(): void {
    clearInterval(this.#timer);
  }
}
