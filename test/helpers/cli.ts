// Runs the built CLI as a user would, and captures what it prints.
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import { CLI } from './s3.js';

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/**
 * `terminal`: on a pseudo-terminal (util-linux's `script`), as a user at a terminal runs
 * it; stdout and stderr then both arrive in `stdout`, as the terminal shows them.
 */
export function runCli(args: readonly string[], env: Record<string, string> = {}, opts: { timeoutMs?: number; terminal?: boolean } = {}): Promise<CliResult> {
  const started = Date.now();
  const argv = [process.execPath, CLI, ...args];
  const [cmd, ...cmdArgs] = opts.terminal ? ['script', '-qec', argv.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' '), '/dev/null'] : argv;
  return new Promise((resolve, reject) => {
    // Only the variables given: the developer's own AWS settings must not leak in.
    const child = spawn(cmd!, cmdArgs, {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** A failure says one `s3zmount: ...` line on stderr, no stack trace, nothing on stdout. */
export function failsWith(r: CliResult, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, `exit code; stderr: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got: ${r.stderr}`);
  assert.match(lines[0] ?? '', /^s3zmount: /);
  assert.match(lines[0] ?? '', pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  assert.equal(r.stdout, '');
}
