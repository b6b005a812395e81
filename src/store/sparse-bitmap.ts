// One bit per block of a device that may be far too big for a bitmap of its own: the
// zero map's "has an object in S3". Sized by the chunks that hold a set bit, not by
// the device, and stored one chunk per LMDB value (the `zmap` table).
//
// Invariants:
// - Memory is one 4 KiB bitmap per chunk of CHUNK_BITS blocks that holds a set bit,
//   never a bitmap of the whole device; a chunk whose last bit clears is freed.
// - count and chunks always match the bits (kept on every change, recounted on load).
// - A chunk's stored value is its CHUNK_BYTES bytes as they are in memory, bit i of a
//   chunk in byte i >> 3 at mask 1 << (i & 7): cache dirs already written load with it.

/** Blocks per chunk: 4 KiB of bits, one LMDB value. */
export const CHUNK_BITS = 32768;
export const CHUNK_BYTES = CHUNK_BITS / 8;

/** The chunk that holds block `index` (the key of its stored value). */
export function chunkOf(index: number): number {
  return Math.floor(index / CHUNK_BITS);
}

interface Chunk {
  readonly bits: Uint8Array;
  count: number;
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => {
  let n = 0;
  for (let v = b; v !== 0; v &= v - 1) n++;
  return n;
});

export class SparseBitmap {
  /** Blocks of the device; a stored chunk past its end is malformed. */
  readonly size: number;
  #chunks = new Map<number, Chunk>();
  #count = 0;

  constructor(size: number) {
    this.size = size;
  }

  /** Set bits. */
  get count(): number {
    return this.#count;
  }

  /** Chunks held in memory (4 KiB each). */
  get chunks(): number {
    return this.#chunks.size;
  }

  has(index: number): boolean {
    if (!Number.isInteger(index)) return false;
    const chunk = this.#chunks.get(chunkOf(index));
    if (chunk === undefined) return false;
    const off = index % CHUNK_BITS;
    return (chunk.bits[off >>> 3]! & (1 << (off & 7))) !== 0;
  }

  /** Sets or clears one bit; true when it changed (its chunk, chunkOf(index), is then to be stored again). */
  set(index: number, on: boolean): boolean {
    const key = chunkOf(index);
    let chunk = this.#chunks.get(key);
    if (chunk === undefined) {
      if (!on) return false;
      chunk = { bits: new Uint8Array(CHUNK_BYTES), count: 0 };
      this.#chunks.set(key, chunk);
    }
    const off = index % CHUNK_BITS;
    const byte = off >>> 3;
    const mask = 1 << (off & 7);
    const was = (chunk.bits[byte]! & mask) !== 0;
    if (was === on) return false;
    chunk.bits[byte] = on ? chunk.bits[byte]! | mask : chunk.bits[byte]! & ~mask;
    chunk.count += on ? 1 : -1;
    this.#count += on ? 1 : -1;
    if (chunk.count === 0) this.#chunks.delete(key);
    return true;
  }

  /**
   * The indices of set bits in ascending order. Chunks are visited in the order they
   * had when iteration began; bits are read live, so a bit set meanwhile may or may
   * not be reported.
   */
  *indices(): Generator<number> {
    const keys = [...this.#chunks.keys()].sort((a, b) => a - b);
    for (const key of keys) {
      const chunk = this.#chunks.get(key);
      if (chunk === undefined) continue;
      const base = key * CHUNK_BITS;
      for (let byte = 0; byte < CHUNK_BYTES; byte++) {
        const v = chunk.bits[byte]!;
        if (v === 0) continue;
        for (let bit = 0; bit < 8; bit++) if (v & (1 << bit)) yield base + byte * 8 + bit;
      }
    }
  }

  /**
   * The value to store for chunk `key`: a copy (LMDB reads the buffer at commit time,
   * and the bits keep changing); undefined when the chunk is empty (remove its value).
   */
  stored(key: number): Buffer | undefined {
    const chunk = this.#chunks.get(key);
    return chunk !== undefined ? Buffer.from(chunk.bits) : undefined;
  }

  /** Takes in one stored chunk; false, with nothing changed, if key or value could not have been written by stored(). */
  load(key: number, value: Uint8Array): boolean {
    const maxChunk = chunkOf(this.size - 1);
    if (!Number.isInteger(key) || key < 0 || key > maxChunk || value.length !== CHUNK_BYTES) return false;
    // Copied: LMDB may hand out memory it reuses.
    const bits = Uint8Array.from(value);
    let count = 0;
    for (const b of bits) count += POPCOUNT[b]!;
    if (count === 0) return true;
    const old = this.#chunks.get(key);
    if (old !== undefined) this.#count -= old.count;
    this.#chunks.set(key, { bits, count });
    this.#count += count;
    return true;
  }

  clear(): void {
    this.#chunks.clear();
    this.#count = 0;
  }
}
