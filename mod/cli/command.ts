/**
 * What a command receives: its parsed flags and positionals, and where it
 * writes. The commands and `mod.ts`, which dispatches to them, both import
 * it, so no command imports the dispatcher.
 *
 * @module
 */

/** Where a command writes. */
export interface CliOutput {
  out: (line: string) => void;
  err: (line: string) => void;
}

/** One parsed option: a flag, a string, or a repeated option's list. */
export type OptionValue = string | boolean | (string | boolean)[] | undefined;

/** Parsed flags and positionals of one command. */
export interface CommandInput {
  values: Record<string, OptionValue>;
  positionals: string[];
  output: CliOutput;
}
