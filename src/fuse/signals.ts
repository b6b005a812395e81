// Opt-in unmount on SIGINT/SIGTERM for a session: a first signal unmounts cleanly,
// a second one detaches at once; then the signal is raised again so the process
// ends as it would have. No listener is installed unless asked for.
import { FuseSession, kExit } from './session.js';
import type { UnmountOptions } from './types.js';
import { messageOf } from './util.js';

export interface SignalOptions {
  /** Default ['SIGINT', 'SIGTERM']. */
  signals?: NodeJS.Signals[];
  /** Passed to unmount(). */
  timeoutMs?: number;
  /** Called when a signal arrives, before unmounting. */
  onSignal?: (signal: NodeJS.Signals) => void;
  /** Called if the unmount fails. Default: process.emitWarning. */
  onError?: (err: unknown) => void;
  /**
   * After the unmount, remove the listeners and raise the signal again so the
   * process ends as it would have (only if no other listener is left). Default true.
   */
  reraise?: boolean;
}

/**
 * Opt-in: on SIGINT/SIGTERM, unmount `session` cleanly. A second signal while
 * unmounting detaches the mount at once and re-raises.
 * Returns a function that removes the listeners. Also removed once the session closes.
 */
export function unmountOnSignals(session: FuseSession, options: SignalOptions = {}): () => void {
  if (!(session instanceof FuseSession)) throw new TypeError('session must be a FuseSession');
  const signals = options.signals ?? ['SIGINT', 'SIGTERM'];
  if (!Array.isArray(signals) || signals.some((s) => typeof s !== 'string')) throw new TypeError('options.signals must be an array of signal names');
  const reraise = options.reraise ?? true;
  const onError = options.onError ?? ((err: unknown) => process.emitWarning(`unmount on signal failed: ${messageOf(err)}`, 'S3zFuseWarning'));
  let handling = false;
  let disposed = false;
  const dispose = (): void => {
    if (disposed) return;
    disposed = true;
    for (const s of signals) process.removeListener(s, listener);
  };
  const raise = (signal: NodeJS.Signals): void => {
    dispose();
    if (reraise && process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  function listener(signal: NodeJS.Signals): void {
    if (handling) {
      // Death by signal runs no 'exit' listener: detach now, then let the signal end the process.
      session[kExit]();
      raise(signal);
      return;
    }
    handling = true;
    try {
      options.onSignal?.(signal);
    } catch (err) {
      onError(err);
    }
    const unmountOpts: UnmountOptions = options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs };
    session.unmount(unmountOpts).catch(onError).finally(() => raise(signal));
  }
  for (const s of signals) process.on(s, listener);
  void session.closed.then(() => {
    if (!handling) dispose();
  });
  return dispose;
}