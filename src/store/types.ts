// The one interface every layer implements and wraps (DESIGN §3). A block index
// runs from 0 to blockCount-1; a block is exactly blockSize bytes or null (zeros).
//
// Contract for every BlockStore:
// - read(i) resolves to the last data written to i (null if never written, zero-written or trimmed),
//   or throws; it never resolves to bytes that were not written. The buffer may be shared with
//   a cache: callers must not mutate it (copy first, as a read-modify-write does).
// - write(i, data) takes ownership of `data` (callers must not mutate it afterwards);
//   data is exactly blockSize bytes. A store may turn all-zero data into null.
// - flush() is a barrier: every write that resolved before flush() was called is durable
//   in the bottom store (S3) when it resolves.
// - close() flushes, then frees resources; any later call throws ECLOSED.
export interface ReadOptions {
  /** Background reads (prefetch, hydration) yield to foreground ones. */
  readonly priority?: 'foreground' | 'background';
  readonly signal?: AbortSignal;
}

export interface BlockStore {
  readonly blockSize: number;
  readonly blockCount: number;
  read(index: number, opts?: ReadOptions): Promise<Buffer | null>;
  write(index: number, data: Buffer | null): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
}
