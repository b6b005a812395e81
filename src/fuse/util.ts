// Small helpers shared by the binding's files: error messages and errnos, thenables,
// reply number checks, bounded waits.
import type { Awaitable } from './types.js';

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The errno an error carries (normalised to positive), or undefined. */
export function errnoOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = (err as { errno?: unknown }).errno;
  if (typeof e !== 'number' || !Number.isInteger(e) || e === 0 || Math.abs(e) >= 4096) return undefined;
  return Math.abs(e);
}

export function isThenable<T>(v: Awaitable<T>): v is PromiseLike<T> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

export function num(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new TypeError(`${name} must be a finite number >= 0`);
  return v;
}

export function delay(ms: number): { promise: Promise<void>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<void>((res) => {
    timer = setTimeout(res, ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

/** Resolves true if `p` settles within `ms`, false otherwise. */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  const d = delay(ms);
  try {
    return await Promise.race([p.then(() => true, () => true), d.promise.then(() => false)]);
  } finally {
    d.cancel();
  }
}