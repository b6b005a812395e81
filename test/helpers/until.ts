// Polls a condition until it holds, for tests that wait on work in flight.
import { setTimeout as sleep } from 'node:timers/promises';

/** Resolves once `cond()` is true; throws "timed out waiting for <what>" after `ms`. */
export async function until(what: string, cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(1);
  }
}
