// Mount options and handler tables, checked and resolved to their defaults before
// any native call: a bad option is a TypeError at mount(), never a half-made mount.
import type { FuseHandlers, HandlerName, MountOptions, WriteBuffers } from './types.js';
import { HANDLER_NAMES, HANDLER_OPS, MIB, OP, WRITE_MODES } from './native.js';
const OPTION_KEYS = new Set<string>([
  'readOnly', 'allowOther', 'defaultPermissions', 'fsname', 'subtype', 'maxWrite', 'maxReadahead',
  'maxBackground', 'congestionThreshold', 'threads', 'attrTimeout', 'entryTimeout', 'initTimeoutMs',
  'unmountTimeoutMs', 'onError', 'writeBuffers', 'allowNonempty', 'spliceReplies',
]);

export interface ResolvedOptions {
  readOnly: boolean;
  allowOther: boolean;
  defaultPermissions: boolean;
  allowNonempty: boolean;
  fsname: string;
  subtype: string;
  maxWrite: number;
  maxReadahead: number;
  maxBackground: number;
  congestionThreshold: number;
  threads: number;
  attrTimeout: number;
  entryTimeout: number;
  initTimeoutMs: number;
  unmountTimeoutMs: number;
  writeBuffers: WriteBuffers;
  spliceReplies: boolean;
  onError: (err: unknown, op: HandlerName) => void;
}

function checkInt(name: string, v: unknown, min: number, max: number, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new TypeError(`options.${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  }
  return v;
}

function checkSeconds(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new TypeError(`options.${name} must be a number of seconds >= 0, got ${String(v)}`);
  }
  return v;
}

function checkBool(name: string, v: unknown): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new TypeError(`options.${name} must be a boolean`);
  return v;
}

function defaultOnError(err: unknown, op: HandlerName): void {
  process.emitWarning(`FUSE ${op} handler failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, 'S3zFuseWarning');
}

export function resolveOptions(options: MountOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  for (const k of Object.keys(options)) {
    if (!OPTION_KEYS.has(k)) throw new TypeError(`unknown mount option "${k}"`);
  }
  const fsname = options.fsname ?? 's3zmount';
  if (typeof fsname !== 'string' || fsname.length === 0 || fsname.length > 256 || /[\s,\\\0-\x1f\x7f]/.test(fsname)) {
    throw new TypeError('options.fsname must be 1-256 printable characters without spaces, commas or backslashes');
  }
  const subtype = options.subtype ?? 's3zmount';
  if (typeof subtype !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(subtype)) {
    throw new TypeError('options.subtype must be 1-64 characters of [A-Za-z0-9_.-]');
  }
  const maxWrite = checkInt('maxWrite', options.maxWrite, 4096, MIB, MIB);
  if (maxWrite % 4096 !== 0) throw new TypeError('options.maxWrite must be a multiple of 4096');
  const maxBackground = checkInt('maxBackground', options.maxBackground, 1, 65535, 64);
  const writeBuffers = options.writeBuffers ?? 'owned';
  if (!Object.hasOwn(WRITE_MODES, writeBuffers)) throw new TypeError('options.writeBuffers must be "owned", "borrowed" or "lent"');
  const onError = options.onError ?? defaultOnError;
  if (typeof onError !== 'function') throw new TypeError('options.onError must be a function');
  return {
    readOnly: checkBool('readOnly', options.readOnly),
    allowOther: checkBool('allowOther', options.allowOther),
    defaultPermissions: checkBool('defaultPermissions', options.defaultPermissions),
    allowNonempty: checkBool('allowNonempty', options.allowNonempty),
    fsname,
    subtype,
    maxWrite,
    maxReadahead: checkInt('maxReadahead', options.maxReadahead, 0, 64 * MIB, MIB),
    maxBackground,
    congestionThreshold: checkInt('congestionThreshold', options.congestionThreshold, 1, maxBackground, Math.max(1, Math.floor((maxBackground * 3) / 4))),
    threads: checkInt('threads', options.threads, 1, 256, 16),
    attrTimeout: checkSeconds('attrTimeout', options.attrTimeout, 1),
    entryTimeout: checkSeconds('entryTimeout', options.entryTimeout, 1),
    initTimeoutMs: checkInt('initTimeoutMs', options.initTimeoutMs, 1, 3_600_000, 10_000),
    unmountTimeoutMs: checkInt('unmountTimeoutMs', options.unmountTimeoutMs, 0, 3_600_000, 10_000),
    writeBuffers,
    spliceReplies: options.spliceReplies === undefined ? true : checkBool('spliceReplies', options.spliceReplies),
    onError,
  };
}

export function checkHandlers(handlers: FuseHandlers): number {
  if (typeof handlers !== 'object' || handlers === null) throw new TypeError('handlers must be an object');
  let mask = 1 << OP.INIT; // INIT always reaches JS: it is how mount() learns the mount is ready
  for (const name of HANDLER_NAMES) {
    const h: unknown = handlers[name];
    if (h === undefined) continue;
    if (typeof h !== 'function') throw new TypeError(`handlers.${name} must be a function`);
    mask |= 1 << HANDLER_OPS[name];
  }
  return mask;
}