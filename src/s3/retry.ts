// Retries with capped, jittered exponential backoff (p-retry). Callers say which
// errors are worth another attempt; the last error is what they get back.
import pRetry from 'p-retry';

export interface RetryPolicy {
  /** Attempts after the first. */
  readonly retries: number;
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
  /** No new attempt starts after this long. */
  readonly maxTotalMs: number;
  /**
   * No new attempt after this long while the endpoint has never answered and cannot be
   * reached (refused, no such host, no connection in time): more likely a wrong URL or a
   * firewall than an outage, so the user hears it within seconds, yet a local server
   * started just before (`local-s3 &`) has time to listen. Unset: `maxTotalMs`.
   */
  readonly firstContactMs?: number;
}

export const DEFAULT_RETRY: RetryPolicy = { retries: 6, minDelayMs: 100, maxDelayMs: 5000, maxTotalMs: 60_000, firstContactMs: 2000 };

export function withRetry<T>(
  policy: RetryPolicy,
  attempt: (n: number) => Promise<T>,
  isRetryable: (err: unknown) => boolean,
  onRetry: (err: unknown, n: number) => void,
): Promise<T> {
  return pRetry(attempt, {
    retries: policy.retries,
    factor: 2,
    minTimeout: policy.minDelayMs,
    maxTimeout: policy.maxDelayMs,
    randomize: true,
    maxRetryTime: policy.maxTotalMs,
    shouldRetry: ({ error, retriesLeft }) => {
      const again = retriesLeft > 0 && isRetryable(error);
      if (again) onRetry(error, policy.retries - retriesLeft + 1);
      return again;
    },
  });
}
