// Typed errors. Every error the product raises on purpose is an S3zError with a
// stable `code` (for tools and tests) and the errno a FUSE reply would carry.
// Only the FUSE ops layer turns these into errno; the CLI turns them into one line.
import { constants } from 'node:os';

const E = constants.errno;

export type ErrorCode =
  | 'EUSAGE' // bad command-line input
  | 'EBADURL' // malformed s3:// URL
  | 'EBADSIZE' // size or block size out of range
  | 'ENOBUCKET' // bucket does not exist
  | 'EACCESS' // credentials refused
  | 'EUNREACHABLE' // endpoint cannot be reached in time
  | 'ENOVOLUME' // no descriptor under the prefix
  | 'EVOLUMEEXISTS' // create on an existing volume
  | 'EBADVOLUME' // descriptor unreadable or not what was expected
  | 'ECORRUPT' // block failed verification after retries
  | 'EMISSING' // a block the volume lists as stored has no object in S3
  | 'ENOSPACE' // the local cache disk is full
  | 'ESTALE' // read-after-write guard never saw the expected content
  | 'ES3' // any other S3 failure after retries
  | 'ERANGE' // block index or byte range outside the device
  | 'EROFS' // write on a read-only store
  | 'ELEASE' // another writer holds the lease
  | 'EMOUNT' // mount failed
  | 'ECACHEDIR' // the local cache directory cannot be made or written
  | 'EDEVICE' // a request the device refuses (errno given explicitly)
  | 'EIMAGE' // put/get: the local image is missing, unreadable, too large, or would be overwritten
  | 'EOUTPUT' // the command's own output (stdout) could not be written
  | 'ECLOSED'; // store used after close

const ERRNO: Record<ErrorCode, number> = {
  EUSAGE: E.EINVAL,
  EBADURL: E.EINVAL,
  EBADSIZE: E.EINVAL,
  ENOBUCKET: E.ENOENT,
  EACCESS: E.EACCES,
  EUNREACHABLE: E.EIO,
  ENOVOLUME: E.ENOENT,
  EVOLUMEEXISTS: E.EEXIST,
  EBADVOLUME: E.EINVAL,
  ECORRUPT: E.EIO,
  EMISSING: E.EIO,
  ENOSPACE: E.ENOSPC,
  ESTALE: E.EIO,
  ES3: E.EIO,
  ERANGE: E.EINVAL,
  EROFS: E.EROFS,
  ELEASE: E.EBUSY,
  EMOUNT: E.EIO,
  ECACHEDIR: E.EIO,
  EDEVICE: E.EINVAL,
  EIMAGE: E.EINVAL,
  EOUTPUT: E.EIO,
  ECLOSED: E.EIO,
};

export class S3zError extends Error {
  readonly code: ErrorCode;
  readonly errno: number;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; errno?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'S3zError';
    this.code = code;
    this.errno = options?.errno ?? ERRNO[code];
  }
}

export function isS3zError(err: unknown, code?: ErrorCode): err is S3zError {
  return err instanceof S3zError && (code === undefined || err.code === code);
}
