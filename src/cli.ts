#!/usr/bin/env node
// The s3zmount command line (DESIGN §5). Only wiring lives here: each command's
// work is in src/commands/. Exit codes: 0 success, 1 failure, 2 usage.
import { Command, CommanderError, Option } from 'commander';
import { makeContext, reportFailure, runCommand, type GlobalOptions } from './commands/context.js';
import { CliCommand, numberOption, usageLine } from './commands/usage.js';
import { S3zError } from './errors.js';
import type { CreateOptions } from './commands/volume-commands.js';
import type { ImageCommandOptions } from './commands/image-commands.js';
import type { MountCommandOptions } from './commands/mount-commands.js';
import { STORAGE_CLASSES } from './volume/storage.js';

// Each command's module is loaded when it runs: `stats` or `unmount` then start
// without the S3 SDK, LMDB or the FUSE addon (a few hundred ms on this machine).
const volumeCommands = () => import('./commands/volume-commands.js');
const imageCommands = () => import('./commands/image-commands.js');
const mountCommands = () => import('./commands/mount-commands.js');

const program = new CliCommand('s3zmount')
  .description('A ZFS pool whose disk lives in S3: a thin-provisioned block device kept as block objects, mounted through FUSE.')
  .version('0.1.0')
  .option('--endpoint <url>', 'S3 endpoint URL, for S3-compatible servers (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS)')
  .option('--region <region>', 'S3 region (default: $AWS_REGION, else us-east-1)')
  .addOption(new Option('--log-level <level>', 'log level on stderr').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('warn'))
  .exitOverride()
  .addHelpText(
    'after',
    `
Credentials come from the AWS SDK's default chain: AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role. Never from flags.

Sizes take K, M, G and T suffixes (binary: 1G = 1073741824 bytes).

Example, on one machine with the embedded S3 server:
  s3zmount local-s3 --dir /var/tmp/s3 &          # prints the variables to export
  export AWS_ENDPOINT_URL_S3=http://127.0.0.1:4568 AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
  s3zmount create s3://s3zmount/backup --size 1T
  s3zmount status s3://s3zmount/backup

Exit codes: 0 success, 1 failure (one line on stderr saying why), 2 bad usage.`,
  );

let debug = false;
function ctx(cmd: Command) {
  const g = cmd.optsWithGlobals<GlobalOptions>();
  // A mount's log is structured where nobody reads it as it comes (its log file, a
  // journal); every other command's warnings are read by the person who ran it.
  const c = makeContext(g, cmd.name() === 'mount' ? 'auto' : 'text');
  debug = c.debug;
  return c;
}

program
  .command('create')
  .description('create a volume: writes its descriptor; refuses if one exists')
  .argument('<s3url>', 'where the volume lives: s3://BUCKET/PREFIX')
  // Not a requiredOption: commander checks those before the arguments, so a bare
  // "create" would ask for --size before the URL. The action asks in that order.
  .option('--size <size>', 'device size (required): a multiple of the block size, at most 2^53 (e.g. 2T)')
  .option('--block-size <size>', 'block size: a power of two from 4K to 64M', '1M')
  .option('--storage-class <class>', `S3 storage class of every block: ${STORAGE_CLASSES.join(', ')}`, 'STANDARD')
  .option('--sse <mode>', 'server-side encryption on every PUT: AES256 (S3-managed keys) or aws:kms')
  .option('--sse-kms-key-id <id>', 'the KMS key for --sse aws:kms (id, ARN or alias; default: the account\'s aws/s3 key)')
  .addHelpText('after', `
Block size: fixed for the life of the volume. 1M suits ZFS's 128K records. A read
fetches and verifies its whole block, and a partial write to a block held only in
S3 fetches it first, so larger blocks make random reads dearer; they make fewer
objects (fewer requests to pay for). The daemon holds whole blocks in memory while
it fetches or uploads them: about 150 MB of RSS with 1M blocks, 0.5 GB with 64M.

Storage classes: every block is read with a plain GET, whenever ZFS asks, so only
classes that serve a GET at once are accepted:
  ${STORAGE_CLASSES.join(', ')}.
GLACIER and DEEP_ARCHIVE are refused: their objects must be restored (hours)
before a GET, and a volume must be readable on demand. GLACIER_IR is the cheap
instant one; IA classes bill at least 128 KiB per object and charge per GB read.
"s3zmount status" estimates the monthly cost.

Encryption: ZFS native encryption is the recommended way (S3 then only ever holds
ciphertext, and keys stay with you):
  zpool create -O encryption=on -O keyformat=passphrase backup /mnt/v/disk
  zfs create -o encryption=on -o keyformat=passphrase backup/secret
--sse adds S3's encryption at rest on top, e.g. where a bucket policy demands it.`)
  .action((url: string, opts: Partial<CreateOptions>, cmd: Command) =>
    runCommand(() => debug, async () => {
      if (opts.size === undefined) throw new S3zError('EUSAGE', usageLine("required option '--size <size>' not specified", cmd));
      return (await volumeCommands()).createCommand(ctx(cmd), url, { ...opts, size: opts.size } as CreateOptions);
    }),
  );

program
  .command('status')
  .description('show a volume: size, blocks and bytes stored, lease holder, storage class, estimated monthly cost')
  .argument('<s3url>', 's3://BUCKET/PREFIX')
  .option('--json', 'print JSON (keys: format, uuid, size, blockSize, blocksStored, bytesStored, lease, storageClass, monthlyCostUsd...)')
  .option('--price-per-gb-month <usd>', 'storage price to estimate with, instead of the AWS us-east-1 list price of the class')
  .action((url: string, opts: { json?: boolean; pricePerGbMonth?: string }, cmd: Command) => runCommand(() => debug, async () => (await volumeCommands()).statusCommand(ctx(cmd), url, opts)));

program
  .command('verify')
  .description('check every block object: key in range, size, checksum; exit 1 if any is bad')
  .argument('<s3url>', 's3://BUCKET/PREFIX')
  .option('--json', 'print the report as JSON (no progress display)')
  .option('--concurrency <n>', 'parallel GETs', '16')
  .option('--quiet', 'no progress display')
  .action((url: string, opts: { json?: boolean; quiet?: boolean; concurrency: string }, cmd: Command) => runCommand(() => debug, async () => (await volumeCommands()).verifyCommand(ctx(cmd), url, opts)));

program
  .command('erase')
  .description('delete a volume: every block object, the lease and the descriptor')
  .argument('<s3url>', 's3://BUCKET/PREFIX')
  .option('--yes', 'confirm: without it nothing is deleted')
  .option('--force', 'erase even while a read-write mount holds the lease (only if that mount is gone: refused while it runs on this host)')
  .option('--quiet', 'no progress display')
  .action((url: string, opts: { yes?: boolean; force?: boolean; quiet?: boolean }, cmd: Command) => runCommand(() => debug, async () => (await volumeCommands()).eraseCommand(ctx(cmd), url, opts)));

program
  .command('mount')
  .description('mount a volume: <dir>/disk is the device (a ZFS vdev), <dir>/stats its counters')
  .argument('<s3url>', 's3://BUCKET/PREFIX')
  .argument('<dir>', 'an existing empty directory (see --allow-nonempty)')
  .addOption(new Option('--read-only', 'no writes at all; for zpool import -o readonly=on').conflicts('overlay'))
  .addOption(new Option('--overlay', 'writes stay in the local cache, S3 is never changed (restore and try things)').conflicts('readOnly'))
  .option('--cache-dir <dir>', 'local block cache and journal (default: ~/.cache/s3zmount/<volume uuid>)')
  .option('--cache-size <size>', 'clean blocks beyond this are evicted, least recently used first', '10G')
  .option('--hydrate', 'pull every stored block into the cache in the background')
  .option('--force', 'mount even though another read-write mount holds the lease (only if that mount is gone: refused while it runs on this host)')
  .option('--allow-nonempty', 'mount over a directory that holds files (they are hidden until unmount)')
  .option('--foreground', 'stay attached: log to stderr, unmount on Ctrl-C')
  .option('--storage-class <class>', `write new blocks in this class instead of the volume's (${STORAGE_CLASSES.join(', ')}); one empty PUT at mount checks that the server takes it`)
  .addOption(new Option('--ready-fd <fd>').hideHelp())
  .addOption(new Option('--log-file <file>', 'daemon log (default: ~/.cache/s3zmount/logs/<dir>.log)'))
  .addHelpText('after', `
Back up:   s3zmount mount s3://b/vol /mnt/v && zpool create backup /mnt/v/disk
Browse:    s3zmount mount --read-only s3://b/vol /mnt/v && zpool import -o readonly=on -d /mnt/v backup
Restore:   s3zmount mount --overlay s3://b/vol /mnt/v --hydrate
Returns once the mount is ready (exit 0) or has failed (exit 1 and why).`)
  .action((url: string, dir: string, opts: MountCommandOptions, cmd: Command) => runCommand(() => debug, async () => (await mountCommands()).mountCommand(ctx(cmd), url, dir, opts)));

program
  .command('unmount')
  .alias('umount')
  .description('upload what is dirty, release the lease and unmount; exits 0 only once everything is in S3')
  .argument('<dir>', 'the mount directory')
  .option('--timeout <seconds>', 'stop waiting after this long: exit 1 saying what is not in S3 yet (the mount stays up and keeps retrying)', numberOption('seconds', 1, 999_999), '3600')
  .option('--now', 'stop at once, even with blocks not yet in S3: the cache dir keeps them and the next read-write mount uploads them first')
  .addHelpText('after', `
Exits 0 only once every block written through the mount is in S3. While S3 fails,
the mount stays up and keeps retrying, and unmounts by itself once everything is in
S3; run unmount again to wait for that.`)
  .action((dir: string, opts: { timeout: string; now?: boolean }, cmd: Command) => runCommand(() => debug, async () => (await mountCommands()).unmountCommand(ctx(cmd), dir, opts)));

program
  .command('hydrate')
  .description("pull every stored block of a mounted volume into its cache, at low priority (reads come first)")
  .argument('<dir>', 'the mount directory')
  .option('--wait', 'follow it until done: exit 0 when every block is local, 1 with why if S3 fails for good or the mount goes away')
  .option('--quiet', 'no progress display')
  .addHelpText('after', `
Without --wait it starts hydration (or finds it running) and returns; "s3zmount stats <dir>"
follows it. Blocks already in the cache cost nothing, so after a remount of the same
--cache-dir it fetches only what is missing. It keeps 16 GETs in flight, and starts no
more than 2 while a read of the mount waits on S3. Progress goes to stderr: a bar on a
terminal (blocks, bytes, MB/s, ETA), a plain line every few seconds otherwise.`)
  .action((dir: string, opts: { wait?: boolean; quiet?: boolean }, cmd: Command) => runCommand(() => debug, async () => (await import('./commands/hydrate-command.js')).hydrateCommand(ctx(cmd), dir, opts)));

program
  .command('stats')
  .description("show a mount's counters: S3 requests, cache, write-back, hydration")
  .argument('<dir>', 'the mount directory')
  .option('--json', 'print the stats file as it is')
  .action((dir: string, opts: { json?: boolean }, cmd: Command) => runCommand(() => debug, async () => (await mountCommands()).statsCommand(ctx(cmd), dir, opts)));

program
  .command('put')
  .description('upload a raw image (file, block device, or - for stdin) into a volume: only blocks that differ are sent')
  .argument('<image>', 'a file, a block device (/dev/...), or - for stdin')
  .argument('<s3url>', 's3://BUCKET/PREFIX of an existing volume (s3zmount create)')
  .option('--concurrency <n>', 'requests in flight (each holds a block in memory; at most 512 MiB of blocks)', numberOption('requests', 1, 256), '16')
  .option('--force', 'take the lease even though a read-write mount holds it (only if that mount is gone); put an empty image')
  .option('--quiet', 'no progress display')
  .addHelpText('after', `
Sparse: all-zero blocks are not uploaded, and their objects are deleted if stored.
An image smaller than the volume is fine: stored blocks past its end are deleted,
so the rest of the volume reads as zeros. A larger one is refused (from stdin,
at its first byte past the volume: blocks before it may have been sent). An empty
image (say, from a pipe whose writer failed) is refused unless --force is given.

What changed is found with one LIST request per 1000 stored blocks and no HEAD:
a block whose MD5 equals its listed ETag (the MD5 S3 computes for a single-part
upload) costs no request at all, so a second put of the same image sends 0 PUTs.
A block that differs costs one PUT; blocks that became zero cost one
DeleteObjects request per 1000. An interrupted put, run again, sends only what is
left. (Where ETags are not MD5s, e.g. SSE-KMS on AWS, every non-zero block is sent.)

Takes the volume's write lease while it runs: refused while a read-write mount
holds it. Example: s3zmount put /dev/vg0/disk s3://b/vol`)
  .action((image: string, url: string, opts: ImageCommandOptions, cmd: Command) => runCommand(() => debug, async () => (await imageCommands()).putCommand(ctx(cmd), image, url, opts)));

program
  .command('get')
  .description('download a volume as a raw image (a sparse file, a block device, or - for stdout)')
  .argument('<s3url>', 's3://BUCKET/PREFIX')
  .argument('<image>', 'a new file, a block device (/dev/...), or - for stdout')
  .option('--concurrency <n>', 'requests in flight (each holds a block in memory; at most 512 MiB of blocks)', numberOption('requests', 1, 256), '32')
  .option('--force', 'write over an existing file (only blocks that differ are written: this resumes an interrupted get)')
  .option('--quiet', 'no progress display')
  .addHelpText('after', `
A new file is sparse: blocks the volume does not store are holes, and the file
is the volume's size. Every fetched block is checked against its SHA-256.
Over an existing file (--force) or a block device, each block is read first:
a stored block whose MD5 equals its listed ETag is not fetched again, and an
absent block is written as zeros only where the target holds non-zero data.
A device must be at least the volume's size; nothing past that is touched.
To stdout, the image streams in order, with zeros for absent blocks.
Costs: one LIST request per 1000 stored blocks (twice: totals, then the walk),
one GET per stored block that is not already there.`)
  .action((url: string, image: string, opts: ImageCommandOptions, cmd: Command) => runCommand(() => debug, async () => (await imageCommands()).getCommand(ctx(cmd), url, image, opts)));

program
  .command('local-s3')
  .description('run the embedded S3-compatible server (s3rver) in the foreground, for trying s3zmount on one machine')
  .option('--dir <dir>', 'where it keeps its data (default: ~/.local/share/s3zmount/local-s3)')
  .option('--port <port>', 'TCP port, 0 for any free one', '4568')
  .option('--address <addr>', 'address to listen on', '127.0.0.1')
  .option('--bucket <name...>', 'buckets to create if missing', ['s3zmount'])
  .action((opts: { dir?: string; port: string; address: string; bucket: string[] }, cmd: Command) =>
    runCommand(() => debug, async () => {
      ctx(cmd);
      await (await import('./commands/local-s3.js')).localS3Command(opts);
    }),
  );

// commander's own help command prints the whole help, exit 0, for a command that does
// not exist; this one says so, as any other unknown command.
program.helpCommand(false);
program
  .command('help [command]')
  .description('display help for command')
  .action((name: string | undefined) => {
    if (name === undefined) return program.help();
    const sub = program.commands.find((c) => c.name() === name || c.aliases().includes(name));
    if (sub === undefined) return program.error(`unknown command '${name}'`);
    sub.help();
  });

// A reader that went away (`s3zmount status URL | head -1`) is no failure of the command,
// and no reason for a stack trace: what it would have printed is dropped. Another stdout
// error (a full disk under `> file`) is one line. `get -` listens on its own and says so.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE' || process.stdout.listenerCount('error') > 1) return;
  reportFailure(new S3zError('EOUTPUT', `stdout: ${err.message}`, { cause: err }), debug);
});

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and version are successes; help printed because no command was given is a usage error.
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else {
    // Usage errors (EUSAGE from CliCommand) and anything a command did not catch.
    reportFailure(err, debug);
  }
}
