// Progress for long work (verify, put, get, hydrate): a bar on stderr when it is a
// terminal (cli-progress), nothing otherwise so logs and pipes stay clean.
import cliProgress from 'cli-progress';

export interface Progress {
  /** `done` so far, out of `total` when it is known (it may grow, as a LIST goes on). */
  update(done: number, total?: number): void;
  stop(): void;
}

export function progress(label: string, opts: { enabled?: boolean; unit?: string } = {}): Progress {
  if (!(opts.enabled ?? process.stderr.isTTY)) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% | {value}/{total} ${opts.unit ?? 'blocks'} | {eta_formatted} left`,
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(0, 0);
  return {
    update: (done, total) => {
      if (total !== undefined) bar.setTotal(total);
      bar.update(done);
    },
    stop: () => bar.stop(),
  };
}
