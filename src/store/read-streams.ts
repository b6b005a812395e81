// The prefetch layer's read streams: which reads are sequential, and how far ahead of
// each such reader to read. Told of each read that steers read-ahead, it answers the
// blocks to read ahead now; reading them (queue, memory, the store below) is
// prefetch.ts's.
//
// State:
//   streams   up to `streams` recent read positions (most recent first). A stream
//             becomes sequential after `triggerReads` reads in a row; its window
//             starts at `initialWindow` blocks and doubles each time the reader
//             reaches the blocks added at the last doubling and had to wait for one,
//             up to maxWindow. A reader that finds its blocks already here keeps
//             the window it has: read-ahead grows only as deep as it pays for itself,
//             so a slow reader overshoots the end of what it needs by a few blocks, and
//             a fast one (dd) gets the deepest window. A reader that keeps several
//             reads in flight reads ahead itself (ZFS's prefetcher, which knows the
//             file's blocks), but only as far as its vdev queue lets it (about 1.5
//             blocks of 1 MiB): its stream gets a fixed, shallow window
//             (parallelWindow) that hides one GET round trip and overshoots the end
//             of the file by at most that many blocks.
//
// Invariants:
//   - no read-ahead is answered for a stream before `triggerReads` reads in a row.
//   - an answer never reaches past the last block, nor more than the stream's window
//     past the read; the window never exceeds maxWindow.
//   - a stream's blocks are answered once: each answer starts after the last block
//     answered before (`ahead`), except those the caller had no room for
//     (notScheduled()), which its next read answers again.
//   - at most `streams` streams are tracked; a new one forgets the least recent.

/** The read streams' configuration, in blocks. */
export interface ReadStreamsConfig {
  /** Blocks of the device: read-ahead stops at the last one. */
  readonly blockCount: number;
  /** Window (blocks) when a stream is first seen to be sequential. */
  readonly initialWindow: number;
  /** The window never grows beyond this many blocks ahead of the reader (prefetch.ts: maxWindowBytes, cut to what may be held). */
  readonly maxWindow: number;
  /** Read streams tracked at once. */
  readonly streams: number;
  /** Reads in a row (i, i+1, ...) that make a stream sequential. */
  readonly triggerReads: number;
  /** Window (blocks) of a sequential stream whose reader keeps several reads in flight; 0: none. */
  readonly parallelWindow: number;
}

/** Blocks from..to (inclusive) to read ahead now; none when from > to. */
export interface ReadAhead {
  readonly from: number;
  readonly to: number;
}

interface Stream {
  /** The index a continuing read asks for. */
  next: number;
  /** Reads in a row so far. */
  run: number;
  /** Blocks kept scheduled ahead of the reader; 0 until the stream is sequential. */
  window: number;
  /** Last index scheduled for this stream. */
  ahead: number;
  /** The window doubles when the reader reaches this index. */
  mark: number;
  /** The reader keeps several reads in flight: it reads ahead itself, and gets only the parallel window of ours. */
  parallel: boolean;
}

/** A read just behind an active stream's position (reads arriving out of order) stays in that stream. */
const REORDER_SLACK = 4;

export class ReadStreams {
  #blockCount: number;
  #initialWindow: number;
  #maxWindow: number;
  #maxStreams: number;
  #trigger: number;
  #parallelWindow: number;
  #streams: Stream[] = [];
  /** The stream of the last answer, until the next read: notScheduled() corrects its `ahead`. */
  #answered: Stream | undefined;

  constructor(config: ReadStreamsConfig) {
    this.#blockCount = config.blockCount;
    this.#maxWindow = config.maxWindow;
    this.#initialWindow = Math.min(config.initialWindow, this.#maxWindow);
    this.#maxStreams = config.streams;
    this.#trigger = config.triggerReads;
    this.#parallelWindow = Math.min(config.parallelWindow, this.#maxWindow);
  }

  /**
   * A read of `index`: `waited` when the reader had to wait for the block (it was not
   * read ahead in time), `alone` when no other read of its was in flight. Answers the
   * blocks to read ahead now, possibly none (from > to), or undefined when the read
   * is not part of a sequential stream that gets read-ahead.
   */
  observe(index: number, waited: boolean, alone: boolean): ReadAhead | undefined {
    this.#answered = undefined;
    const at = this.#streams.findIndex(
      (s) => index === s.next || (s.window > 0 && index > s.next && index <= s.ahead + 1),
    );
    if (at < 0) {
      const behind = this.#streams.some((s) => s.window > 0 && index < s.next && index >= s.next - REORDER_SLACK);
      if (behind) return undefined;
      this.#streams.unshift({ next: index + 1, run: 1, window: 0, ahead: index, mark: 0, parallel: !alone });
      if (this.#streams.length > this.#maxStreams) this.#streams.pop();
      return undefined;
    }
    const s = this.#streams[at]!;
    if (at > 0) {
      this.#streams.splice(at, 1);
      this.#streams.unshift(s);
    }
    s.run++;
    s.next = index + 1;
    // Once a stream's reader was seen with another read in flight, it reads ahead itself.
    if (!alone) s.parallel = true;
    if (s.run < this.#trigger) return undefined;
    if (s.parallel) {
      // Traced on zdb -r at 20 ms: ZFS keeps about 1.5 blocks in flight and waits a GET
      // round trip per block; 3 blocks ahead of its newest read cut the copy by 15%.
      if (this.#parallelWindow === 0) return undefined;
      s.window = this.#parallelWindow;
    } else if (s.window === 0) {
      s.window = this.#initialWindow;
      s.mark = index + 1;
    } else if (index >= s.mark && waited) {
      s.window = Math.min(this.#maxWindow, s.window * 2);
      s.mark = s.ahead + 1;
    }
    const from = Math.max(s.ahead + 1, index + 1);
    const to = Math.min(this.#blockCount - 1, index + s.window);
    // Taken as scheduled unless the caller says otherwise: ahead also covers this read.
    s.ahead = Math.max(from - 1, to);
    this.#answered = s;
    return { from, to };
  }

  /**
   * The caller had no room to read `index` ahead, nor the rest of the last answer
   * (which held it): that stream's next read answers them again.
   */
  notScheduled(index: number): void {
    if (this.#answered !== undefined) this.#answered.ahead = index - 1;
  }
}
