// SHA-256 (and MD5, for `put`'s comparison with stored ETags) off the main thread: a
// few worker threads that hash staged copies of blocks held in shared memory (DESIGN §3,
// "the event loop only steers").
//
// Why workers and not WebCrypto: measured on the 2-core dev machine for 1 MiB
// blocks, 16 in flight, WebCrypto's digest copies its input into freshly allocated
// memory on the main thread, ~340-470 µs of main-thread CPU per block (sync
// createHash: ~770); copying into a warm, reused SharedArrayBuffer and posting it
// to one of 2 workers costs ~130-170 µs, with as much throughput (500-700 MiB/s).
// On a loaded 2-core machine the woken worker can preempt the main thread, so a
// profile charges postMessage with part of the hashing: the gain needs spare cores.
//
// States: a worker is started on first use, or by warm() (a mount starts them before
// serving: a worker takes ~100 ms to boot, which the first GET's check would wait
// for); it is ref'd only while it has jobs
// (an idle pool never keeps the process alive, a pending hash always does).
// Invariants:
// - A staging buffer belongs to at most one job from the copy until the answer;
//   only then is it reused. Staging never leaves this module: the caller's buffer
//   is only read (copied) at dispatch.
// - An input already in shared memory (block-buffers.ts) is not staged: the worker
//   reads it in place, so its holder must not change it until the digest is back.
// - At most `perWorker` jobs per worker are staged at once, the rest queue here
//   (unstaged), so staging memory is bounded by workers × perWorker × block size.
// - A worker that dies takes no job with it: its jobs are hashed by WebCrypto (MD5,
//   which WebCrypto lacks, by node:crypto on the calling thread).
import { Worker } from 'node:worker_threads';
import { createHash, webcrypto } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { HashAlgorithm, HashAnswer, HashRequest } from './hash-worker.js';

interface Job {
  readonly algorithm: HashAlgorithm;
  readonly data: Buffer;
  readonly resolve: (digest: Buffer) => void;
  readonly reject: (err: unknown) => void;
  staging: SharedArrayBuffer | undefined;
}

interface Slot {
  readonly worker: Worker;
  readonly jobs: Map<number, Job>;
}

export interface HashPoolOptions {
  readonly workers?: number;
  readonly perWorker?: number;
  /**
   * Larger inputs are not staged (a staging buffer that size would stay allocated): unless
   * they are shared memory already (read in place), they are hashed without the workers.
   */
  readonly maxStaged?: number;
}

/** Workers lost (not closed) before the pool gives up on them and uses WebCrypto only. */
const MAX_FAILURES = 3;

export class HashPool {
  #size: number;
  #perWorker: number;
  #maxStaged: number;
  #slots: Slot[] = [];
  #queue: Job[] = [];
  #free: SharedArrayBuffer[] = [];
  #nextId = 0;
  #failures = 0;
  #closing = false;

  constructor(opts: HashPoolOptions = {}) {
    this.#size = opts.workers ?? Math.max(1, Math.min(4, availableParallelism()));
    this.#perWorker = opts.perWorker ?? 2;
    this.#maxStaged = opts.maxStaged ?? 4 * 1024 * 1024;
  }

  sha256(data: Buffer): Promise<Buffer> {
    return this.#hash('sha256', data);
  }

  md5(data: Buffer): Promise<Buffer> {
    return this.#hash('md5', data);
  }

  #hash(algorithm: HashAlgorithm, data: Buffer): Promise<Buffer> {
    const staged = !(data.buffer instanceof SharedArrayBuffer);
    // Closed: no worker will take a queued job any more.
    if ((staged && data.length > this.#maxStaged) || this.#failures >= MAX_FAILURES || this.#closing) return digestHere(algorithm, data);
    return new Promise<Buffer>((resolve, reject) => {
      this.#queue.push({ algorithm, data, resolve, reject, staging: undefined });
      this.#dispatch();
    });
  }

  /** Workers running now. */
  get workers(): number {
    return this.#slots.length;
  }

  /** Starts every worker now (idle, unref'd), so no hash waits for one to boot. */
  warm(): void {
    while (!this.#closing && this.#failures < MAX_FAILURES && this.#slots.length < this.#size) this.#start();
  }

  /** Stops the workers; hashes in flight finish through WebCrypto. */
  async close(): Promise<void> {
    this.#closing = true;
    const slots = this.#slots;
    this.#slots = [];
    for (const job of this.#queue.splice(0)) digestHere(job.algorithm, job.data).then(job.resolve, job.reject);
    // An unref'd worker's exit does not keep the loop alive for terminate()'s promise.
    for (const s of slots) s.worker.ref();
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      const slot = this.#slotWithRoom();
      if (slot === undefined) return;
      const job = this.#queue.shift()!;
      let view: Uint8Array;
      if (job.data.buffer instanceof SharedArrayBuffer) {
        view = new Uint8Array(job.data.buffer, job.data.byteOffset, job.data.length);
      } else {
        const staging = this.#staging(job.data.length);
        view = new Uint8Array(staging, 0, job.data.length);
        view.set(job.data);
        job.staging = staging;
      }
      const id = this.#nextId++;
      if (slot.jobs.size === 0) slot.worker.ref();
      slot.jobs.set(id, job);
      const req: HashRequest = { id, algorithm: job.algorithm, data: view };
      slot.worker.postMessage(req);
    }
  }

  #slotWithRoom(): Slot | undefined {
    if (this.#closing || this.#failures >= MAX_FAILURES) return undefined;
    let best: Slot | undefined;
    for (const s of this.#slots) if (s.jobs.size < this.#perWorker && (best === undefined || s.jobs.size < best.jobs.size)) best = s;
    if (best !== undefined && best.jobs.size === 0) return best;
    if (this.#slots.length < this.#size) return this.#start();
    return best;
  }

  #start(): Slot {
    const worker = new Worker(new URL('./hash-worker.js', import.meta.url));
    const slot: Slot = { worker, jobs: new Map() };
    worker.on('message', (a: HashAnswer) => {
      const job = slot.jobs.get(a.id);
      if (job === undefined) return;
      slot.jobs.delete(a.id);
      if (slot.jobs.size === 0 && !this.#closing) worker.unref();
      this.#release(job);
      job.resolve(Buffer.from(a.digest.buffer, a.digest.byteOffset, a.digest.byteLength));
      this.#dispatch();
    });
    const lost = (): void => {
      const i = this.#slots.indexOf(slot);
      if (i >= 0) {
        this.#slots.splice(i, 1);
        if (!this.#closing) this.#failures++;
      }
      for (const job of slot.jobs.values()) {
        this.#release(job);
        digestHere(job.algorithm, job.data).then(job.resolve, job.reject);
      }
      slot.jobs.clear();
      if (this.#failures >= MAX_FAILURES || this.#closing) {
        for (const job of this.#queue.splice(0)) digestHere(job.algorithm, job.data).then(job.resolve, job.reject);
      }
      this.#dispatch();
    };
    worker.on('error', lost);
    worker.on('exit', lost);
    // After the listeners: adding a 'message' listener refs the worker's port again.
    worker.unref();
    this.#slots.push(slot);
    return slot;
  }

  #staging(length: number): SharedArrayBuffer {
    const i = this.#free.findIndex((b) => b.byteLength >= length);
    if (i >= 0) return this.#free.splice(i, 1)[0]!;
    return new SharedArrayBuffer(length);
  }

  #release(job: Job): void {
    const s = job.staging;
    if (s === undefined) return;
    job.staging = undefined;
    this.#free.push(s);
    // Bounded by the jobs that can be staged at once; the smallest go first.
    if (this.#free.length > this.#size * this.#perWorker) {
      this.#free.sort((a, b) => b.byteLength - a.byteLength);
      this.#free.length = this.#size * this.#perWorker;
    }
  }
}

/** Without the workers: SHA-256 by WebCrypto (libuv's pool), MD5 here (WebCrypto has none). */
async function digestHere(algorithm: HashAlgorithm, data: Buffer): Promise<Buffer> {
  if (algorithm === 'md5') return createHash('md5').update(data).digest();
  // WebCrypto refuses views of shared memory (block-buffers.ts): hash a private copy.
  const input = data.buffer instanceof SharedArrayBuffer ? Buffer.from(data) : data;
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', input));
}
