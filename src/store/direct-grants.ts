// The cache's side of direct reads (the FUSE binding answering reads of a block from its
// file below JS, fuse/direct-reads.ts): which blocks are granted, and the recency of the
// reads answered there, which the cache's eviction would otherwise never see.
//
// States: off (no table yet), on (useDirectReads() gave one), stopped (close()).
// Invariants:
// - a block is granted only while the cache says it is eligible (held, verified in this
//   mount, bytes in its file), checked at each grant; the cache revokes it before its
//   bytes change or leave;
// - once stopped, nothing is granted and no direct read runs (the files may close).
import type { DirectReads } from './types.js';

/** How often blocks read below JS are counted as used for eviction. */
const RECENCY_MS = 500;

export interface GrantDeps {
  /** True while reads of the block may be answered from its file. */
  eligible(index: number): boolean;
  /** The slab file holding the block, and its open fd. */
  fileOf(index: number): { file: number; fd: number };
  /** The block was read below JS: a use, for eviction. */
  touched(index: number): void;
}

export class DirectGrants {
  #deps: GrantDeps;
  #direct: DirectReads | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(deps: GrantDeps) {
    this.#deps = deps;
  }

  /** Direct reads start: every eligible block of `indices` is granted, and later ones as they become eligible. */
  start(direct: DirectReads, indices: Iterable<number>): void {
    if (this.#stopped || this.#direct !== undefined) return;
    this.#direct = direct;
    for (const index of indices) this.grant(index);
    this.#timer = setInterval(() => {
      for (const index of Array.from(direct.touched())) this.#deps.touched(index);
    }, RECENCY_MS);
    this.#timer.unref();
  }

  /** Called where a block becomes eligible, not per read. */
  grant(index: number): void {
    const direct = this.#direct;
    if (direct === undefined || this.#stopped || !this.#deps.eligible(index)) return;
    const { file, fd } = this.#deps.fileOf(index);
    direct.file(file, fd);
    direct.grant(index);
  }

  /** Returns once no direct read of the block runs; later reads of it come to the cache. */
  revoke(index: number): void {
    this.#direct?.revoke(index);
  }

  /** No direct read from here on (before the files close). */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#direct?.disable();
  }
}
