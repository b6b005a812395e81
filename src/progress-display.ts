// Progress of a long block transfer (hydrate, put, get), on stderr:
//   - a terminal gets a bar: blocks and bytes done of total, MB/s, ETA (cli-progress);
//   - anything else (a log, a pipe) gets one plain line every `intervalMs`, and a last
//     one at done(), so a log shows that the work moves without a line per block;
//   - quiet shows nothing.
// The rate is taken over the last `windowMs` of ticks, not since start(): a run that
// begins with blocks already done (a resume) shows the speed it has now. While the
// totals are unknown (stdin, a LIST still running) the total, percentage and ETA read
// "?" and the bar stays empty; done() with ok makes what was done the total.
// Invariant: one display per start(); tick() before start() and after done() is ignored.
import cliProgress from 'cli-progress';
import { formatSize } from './size.js';

export interface ProgressDisplayOptions {
  /** What is being done, first on the line ("hydrate"). */
  readonly label: string;
  readonly quiet?: boolean;
  readonly stream?: NodeJS.WriteStream;
  /** A bar (true) or plain lines (false); default: whether the stream is a terminal. */
  readonly tty?: boolean;
  /** Plain lines: at most one this often. */
  readonly intervalMs?: number;
  readonly windowMs?: number;
  readonly now?: () => number;
}

export interface ProgressDisplay {
  /** Totals; 0 when not known yet (stdin, a LIST still running): they then grow with what is done, and the ETA is "?". */
  start(totalBlocks: number, totalBytes: number): void;
  /** The totals, once known after a start() without them. */
  setTotal(totalBlocks: number, totalBytes: number): void;
  tick(doneBlocks: number, doneBytes: number): void;
  /** Ends the display: with a last line, or (ok false: the error line says the rest) without. */
  done(ok?: boolean): void;
}

export function progressDisplay(opts: ProgressDisplayOptions): ProgressDisplay {
  if (opts.quiet) return { start() {}, setTotal() {}, tick() {}, done() {} };
  const stream = opts.stream ?? process.stderr;
  const tty = opts.tty ?? stream.isTTY === true;
  return new Display(opts.label, stream, tty, opts.intervalMs ?? 5000, opts.windowMs ?? 5000, opts.now ?? Date.now);
}

class Display implements ProgressDisplay {
  #label: string;
  #stream: NodeJS.WriteStream;
  #tty: boolean;
  #intervalMs: number;
  #windowMs: number;
  #now: () => number;
  #bar: cliProgress.SingleBar | undefined;
  #state: 'new' | 'started' | 'done' = 'new';
  #totalBlocks = 0;
  #totalBytes = 0;
  #totalKnown = false;
  #blocks = 0;
  #bytes = 0;
  #samples: Array<{ t: number; bytes: number }> = [];
  #lastLine = 0;

  constructor(label: string, stream: NodeJS.WriteStream, tty: boolean, intervalMs: number, windowMs: number, now: () => number) {
    this.#label = label;
    this.#stream = stream;
    this.#tty = tty;
    this.#intervalMs = intervalMs;
    this.#windowMs = windowMs;
    this.#now = now;
  }

  start(totalBlocks: number, totalBytes: number): void {
    if (this.#state !== 'new') return;
    this.#state = 'started';
    this.#totalBlocks = totalBlocks;
    this.#totalBytes = totalBytes;
    this.#totalKnown = totalBlocks > 0;
    this.#samples = [{ t: this.#now(), bytes: 0 }];
    this.#lastLine = this.#now();
    if (this.#tty) {
      this.#bar = new cliProgress.SingleBar(
        {
          stream: this.#stream,
          // Our own percentage, total and bar fill: cli-progress's would read 100% of
          // what is done so far while the total is still unknown.
          format: `${this.#label} [{bar}] {pct} | {value}/{of} blocks | {bytes} | {rate} | ETA {left}`,
          formatBar: (_progress: number, o: cliProgress.Options) => {
            const full = Math.round(this.#fraction() * (o.barsize ?? 40));
            return (o.barCompleteString ?? '').slice(0, full) + (o.barGlue ?? '') + (o.barIncompleteString ?? '').slice(0, (o.barsize ?? 40) - full);
          },
          hideCursor: true,
          clearOnComplete: false,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      );
      this.#bar.start(Math.max(totalBlocks, 1), 0, this.#payload());
    } else if (totalBlocks > 0) {
      this.#stream.write(`${this.#label}: ${totalBlocks} blocks (${formatSize(totalBytes)}) to do\n`);
    }
  }

  setTotal(totalBlocks: number, totalBytes: number): void {
    if (this.#state !== 'started' || this.#totalKnown) return;
    this.#totalKnown = true;
    this.#totalBlocks = Math.max(totalBlocks, this.#blocks);
    this.#totalBytes = Math.max(totalBytes, this.#bytes);
    if (this.#bar) {
      this.#bar.setTotal(Math.max(this.#totalBlocks, 1));
      this.#bar.update(this.#blocks, this.#payload());
    } else {
      this.#stream.write(`${this.#label}: ${totalBlocks} blocks (${formatSize(totalBytes)}) to do\n`);
    }
  }

  tick(doneBlocks: number, doneBytes: number): void {
    if (this.#state !== 'started') return;
    this.#blocks = doneBlocks;
    this.#bytes = doneBytes;
    // Totals may grow (blocks written while the work goes on).
    if (doneBlocks > this.#totalBlocks) this.#totalBlocks = doneBlocks;
    if (doneBytes > this.#totalBytes) this.#totalBytes = doneBytes;
    const t = this.#now();
    this.#samples.push({ t, bytes: doneBytes });
    while (this.#samples.length > 2 && t - this.#samples[1]!.t >= this.#windowMs) this.#samples.shift();
    if (this.#bar) {
      this.#bar.setTotal(Math.max(this.#totalBlocks, 1));
      this.#bar.update(doneBlocks, this.#payload());
    } else if (t - this.#lastLine >= this.#intervalMs) {
      this.#lastLine = t;
      this.#stream.write(`${this.#line()}\n`);
    }
  }

  done(ok = true): void {
    if (this.#state !== 'started') return;
    this.#state = 'done';
    // What was done is the whole of it now.
    if (ok) this.#totalKnown = true;
    if (this.#bar) {
      if (ok) this.#bar.update(this.#blocks, this.#payload());
      this.#bar.stop();
    } else if (ok) {
      this.#stream.write(`${this.#line()}\n`);
    }
  }

  /** Bytes per second over the window. */
  #rate(): number {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (first === undefined || last === undefined || last.t <= first.t) return 0;
    return ((last.bytes - first.bytes) * 1000) / (last.t - first.t);
  }

  #eta(): string {
    if (!this.#totalKnown) return '?';
    const rate = this.#rate();
    const left = this.#totalBytes - this.#bytes;
    if (left <= 0) return '0s';
    if (rate <= 0) return '?';
    return formatDuration(left / rate);
  }

  /** How much is done, 0 while the total is unknown. */
  #fraction(): number {
    if (!this.#totalKnown) return 0;
    return this.#totalBytes > 0 ? Math.min(1, this.#bytes / this.#totalBytes) : 1;
  }

  #percent(): string {
    return this.#totalKnown ? `${Math.floor(this.#fraction() * 100)}%` : '?%';
  }

  #payload(): Record<string, string> {
    return {
      pct: this.#percent(),
      of: this.#totalKnown ? String(this.#totalBlocks) : '?',
      bytes: `${formatSize(this.#bytes)}/${this.#totalKnown ? formatSize(this.#totalBytes) : '?'}`,
      rate: `${(this.#rate() / 1e6).toFixed(1)} MB/s`,
      left: this.#eta(),
    };
  }

  #line(): string {
    const p = this.#payload();
    return `${this.#label}: ${this.#blocks}/${p.of} blocks, ${p.bytes} (${p.pct}), ${p.rate}, ETA ${p.left}`;
  }
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** The same display fed by increments (what was just done) instead of running totals. */
export function countingProgress(display: ProgressDisplay): ProgressDisplay {
  let blocks = 0;
  let bytes = 0;
  return {
    start: (totalBlocks, totalBytes) => display.start(totalBlocks, totalBytes),
    setTotal: (totalBlocks, totalBytes) => display.setTotal(totalBlocks, totalBytes),
    tick: (doneBlocks, doneBytes) => {
      blocks += doneBlocks;
      bytes += doneBytes;
      display.tick(blocks, bytes);
    },
    done: (ok) => display.done(ok),
  };
}

export interface ListingNotice {
  update(blocks: number, bytes: number): void;
  /** Erases the line, if one was shown. */
  clear(): void;
}

/**
 * One line on a terminal while a long LIST counts a volume (`status`): nothing for the
 * first `delayMs` (a small volume's count is over before), then "LABEL: listing the
 * volume, N blocks (SIZE) so far", rewritten in place and erased by clear(), so the
 * command's own output follows on a clean screen. Nothing at all off a terminal.
 */
export function listingNotice(label: string, opts: { stream?: NodeJS.WriteStream; tty?: boolean; delayMs?: number; now?: () => number } = {}): ListingNotice {
  const stream = opts.stream ?? process.stderr;
  if (!(opts.tty ?? stream.isTTY === true)) return { update() {}, clear() {} };
  const now = opts.now ?? Date.now;
  const from = now() + (opts.delayMs ?? 1000);
  let shown = false;
  return {
    update(blocks, bytes) {
      if (now() < from) return;
      shown = true;
      stream.write(`\r${label}: listing the volume, ${blocks} blocks (${formatSize(bytes)}) so far\x1b[K`);
    },
    clear() {
      if (shown) stream.write('\r\x1b[K');
      shown = false;
    },
  };
}
