// pMap over an async source, keeping the source's error. p-map 7.1.1 resolves and
// drops that error when the source throws while another of its pulls is pending:
// a `put -` whose first byte past the volume arrived late exited 0, and a LIST that
// failed late would have ended a get, a verify or a hydration as if it were done.
// Here the source just ends, and its error is thrown once the items already taken
// have settled (a mapper's own error still rejects at once, as with pMap).
import pMap from 'p-map';

export interface MapEachOptions {
  readonly concurrency: number;
  readonly signal?: AbortSignal | undefined;
}

export async function mapEach<T>(source: AsyncIterable<T>, mapper: (item: T) => Promise<unknown>, opts: MapEachOptions): Promise<void> {
  let failed: { readonly err: unknown } | undefined;
  async function* guarded(): AsyncGenerator<T> {
    try {
      yield* source;
    } catch (err) {
      failed = { err };
    }
  }
  await pMap(guarded(), mapper, { concurrency: opts.concurrency, ...(opts.signal ? { signal: opts.signal } : {}) });
  if (failed !== undefined) throw failed.err;
}
