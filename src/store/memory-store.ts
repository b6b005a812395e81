// A BlockStore in a Map: the bottom of the stack in unit tests, so each upper
// layer can be tested alone and the same contract tests can run against S3.
// Holds copies, never the caller's buffers; zero blocks are not kept. Reads land in the
// caller's buffer when it gives one (ReadOptions.into), as the S3 store's do, each time
// as a new Buffer object over it.
import type { BlockStore, ReadOptions } from './types.js';
import { checkBlock, checkIndex, checkOpen } from './checks.js';
import { isZero } from './checksum.js';

export class MemoryBlockStore implements BlockStore {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly stats = { read: 0, write: 0, flush: 0 };
  readonly blocks = new Map<number, Buffer>();
  #closed = false;

  constructor(blockSize: number, blockCount: number) {
    this.blockSize = blockSize;
    this.blockCount = blockCount;
  }

  async read(index: number, opts?: ReadOptions): Promise<Buffer | null> {
    checkIndex(this, index, this.#closed);
    this.stats.read++;
    const data = this.blocks.get(index);
    if (data === undefined) return null;
    const into = opts?.into;
    if (into === undefined || into.length !== data.length) return Buffer.from(data);
    data.copy(into);
    return Buffer.from(into.buffer, into.byteOffset, into.length);
  }

  async write(index: number, data: Buffer | null): Promise<void> {
    checkIndex(this, index, this.#closed);
    checkBlock(this, index, data);
    this.stats.write++;
    if (data === null || isZero(data)) this.blocks.delete(index);
    else this.blocks.set(index, Buffer.from(data));
  }

  async flush(): Promise<void> {
    checkOpen(this.#closed);
    this.stats.flush++;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}
