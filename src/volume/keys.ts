// Block keys. Layout "hex/1": `<prefix>/blocks/<index as 12 lowercase hex digits>`, so
// keys sort by block index and a LIST walks the device in order. 12 digits cover
// 2^48 blocks, more than 2^53 bytes at the 4K minimum block size. The descriptor
// records the layout; a volume with a layout this build does not know is refused.
import { keyUnder, type S3Location } from '../s3/url.js';

export const KEY_LAYOUT = 'hex/1';
const DIGITS = 12;

export class BlockKeys {
  readonly prefix: string;

  constructor(loc: S3Location) {
    this.prefix = keyUnder(loc, 'blocks/');
  }

  key(index: number): string {
    return this.prefix + index.toString(16).padStart(DIGITS, '0');
  }

  /** The block index a listed key names, or undefined for a key that is not a block. */
  index(key: string): number | undefined {
    if (!key.startsWith(this.prefix)) return undefined;
    const tail = key.slice(this.prefix.length);
    return tail.length === DIGITS && /^[0-9a-f]+$/.test(tail) ? parseInt(tail, 16) : undefined;
  }
}
