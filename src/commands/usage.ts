// The argument parser, made to speak like the rest of the CLI: commander's own
// complaints (two or three lines, "error: ..." then a help hint) become one
// `s3zmount: ...` line with exit 2, by turning them into EUSAGE errors that the
// same code as every other failure prints. Help and version still go through
// commander's exit override, as successes.
import { Command, InvalidArgumentError, type ErrorOptions } from 'commander';
import { S3zError } from '../errors.js';

export class CliCommand extends Command {
  // Subcommands made with .command() must be CliCommands too, or their errors would escape.
  override createCommand(name?: string): CliCommand {
    return new CliCommand(name);
  }

  /** Every usage error commander finds comes here; nothing is printed yet. */
  override error(message: string, _options?: ErrorOptions): never {
    throw new S3zError('EUSAGE', usageLine(message, this));
  }
}

/** "error: unknown command 'creat'\n(Did you mean create?)" -> "unknown command 'creat' (did you mean create?); see ..." */
export function usageLine(message: string, cmd: Command): string {
  const text = message
    .replace(/^error:\s*/, '')
    .replace(/\n\(Did you mean (.*)\?\)/, ' (did you mean $1?)')
    // "... is invalid. Allowed choices are ..." reads as one sentence with a colon.
    .replace(/\.\s+([A-Za-z])(?=[a-z])/g, (_m, c: string) => `: ${c.toLowerCase()}`)
    .replace(/\s*\n\s*/g, ' ')
    .replace(/\.$/, '');
  const names: string[] = [];
  for (let c: Command | null = cmd; c !== null; c = c.parent) names.unshift(c.name());
  const sub = names.slice(1).join(' ');
  // A "did you mean" already says what to do; otherwise point at the help that would.
  const hint = /did you mean/.test(text) ? '' : `; see "${names.join(' ')} --help"`;
  return `${sub === '' ? '' : `${sub}: `}${text}${hint}`;
}

/** An argParser for options that take a whole number: checks it, and keeps the text the commands expect. */
export function numberOption(what: string, min: number, max: number): (value: string) => string {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected a whole number of ${what} from ${min} to ${max}`);
    }
    return value;
  };
}
