// A per-key mutex: each holder runs after the previous one for that key settles.
// Idle keys cost nothing (a key's chain is forgotten once it drains).
export class KeyedLock {
  #tails = new Map<number, Promise<void>>();

  async run<T>(key: number, fn: () => Promise<T> | T): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}
