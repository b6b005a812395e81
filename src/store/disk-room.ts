// A full local disk (a smaller disk than --cache-size, or one filled by something else
// since the mount): a local write the disk refused is tried again after clean blocks
// were shed and the write-back had time to turn dirty blocks clean, and only then does
// the writer hear ENOSPC.
// Invariants: at most `retries` more attempts per write, each after shedding and a
// growing pause; once the cache is closing, no retry (nothing would free room); the
// error a writer finally gets is ENOSPACE, whatever the disk said, with it as cause.
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';

export interface DiskRoomDeps {
  /** The cache dir, for the message. */
  readonly dir: string;
  /** Drops some clean blocks, least recently used first. */
  readonly shed: () => void;
  /** Resolves once pending local commits settled (their outcome does not matter here). */
  readonly settled: () => Promise<unknown>;
  readonly closed: () => boolean;
  /** Each refusal, for the stats. */
  readonly refused: () => void;
  readonly log: Logger;
  /** Attempts after the first; default 4. */
  readonly retries?: number;
  /** Pause before attempt n+1 is n times this; default 250 ms. */
  readonly backoffMs?: number;
}

export class DiskRoom {
  #deps: DiskRoomDeps;
  #retries: number;
  #backoffMs: number;

  constructor(deps: DiskRoomDeps) {
    this.#deps = deps;
    this.#retries = deps.retries ?? 4;
    this.#backoffMs = deps.backoffMs ?? 250;
  }

  /** Runs `op` for block `index`, again after making room each time it fails with an error `full` accepts. */
  async retry<T>(index: number, op: () => Promise<T>, full: (err: unknown) => boolean): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        if (!full(err)) throw err;
        await this.#roomOrFail(index, attempt, err);
      }
    }
  }

  async #roomOrFail(index: number, attempt: number, err: unknown): Promise<void> {
    const d = this.#deps;
    d.refused();
    if (attempt > this.#retries || d.closed()) {
      d.log.error({ block: index, err: (err as Error).message }, 'the local cache refused a write');
      throw new S3zError('ENOSPACE', `block ${index}: the local cache disk (${d.dir}) has no room left for it`, { cause: err });
    }
    d.log.warn({ block: index, attempt, err: (err as Error).message }, 'local write failed; making room in the cache');
    d.shed();
    await d.settled();
    await new Promise((r) => setTimeout(r, this.#backoffMs * attempt));
  }
}
