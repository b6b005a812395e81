// What a failed LMDB commit means, said once. lmdb-js rejects every write of a failed
// commit with "Commit failed (see commitError for details)" and hangs the reason on
// that error as `commitError`: a promise of its own, which it rejects right after and
// which nobody else ever awaits. Left alone, that rejection is unhandled (seen on a
// full cache disk as a daemon log's "unhandled rejection", and in a process without a
// handler it would end the process), and the caller's error names no cause.
// Invariant: every async write the layers make goes through `committing` before
// anything awaits it: LocalDb's tables (table.ts) route put, remove and clearAsync
// through it, and LocalDb's transaction, batch and committed do the same.
import { S3zError } from '../errors.js';

/**
 * `write` (a put, a remove, a transaction or a batch of LMDB), rejecting with an error
 * that says why the commit failed (ENOSPACE on a full disk), lmdb-js's own rejection
 * handled.
 */
export function committing<T>(write: Promise<T>): Promise<T> {
  return write.catch(async (err: unknown) => {
    throw await commitFailure(err);
  });
}

/**
 * Handles the `commitError` hung on `err` at once (before any await), then resolves to
 * an S3zError naming its reason; `err` itself when it is not a failed commit (a
 * transaction callback that threw).
 */
async function commitFailure(err: unknown): Promise<unknown> {
  const hung = (err as { commitError?: unknown } | null | undefined)?.commitError;
  if (!(hung instanceof Promise)) return err;
  const reason = hung.then(
    () => undefined,
    (r: unknown) => r,
  );
  // Rejected before the write's rejection is seen when lmdb-js had a status to report;
  // otherwise it may never settle, so wait one turn of the event loop at most.
  const why = await Promise.race([reason, new Promise<undefined>((resolve) => setImmediate(resolve, undefined))]);
  const text = why instanceof Error ? why.message : 'no reason given';
  const full = /No space left|ENOSPC|MDB_MAP_FULL|Disk quota/i.test(text);
  return new S3zError(full ? 'ENOSPACE' : 'ECACHEDIR', `the cache database could not commit: ${text}`, { cause: why ?? err });
}
