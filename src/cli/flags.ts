/**
 * Command-line flags: `--name value`, `--name=value` and boolean `--name`.
 * Every command declares what it takes; anything else is a usage error that
 * names the flag and the command.
 */
export class UsageError extends Error {}

export interface FlagSpec {
  /** Flags that take a value, with their defaults. */
  values: Record<string, string>;
  /** Flags that are true when present. */
  switches?: readonly string[];
}

export interface ParsedFlags {
  value(name: string): string;
  on(name: string): boolean;
  /** The flag was on the command line (its value may still equal the default). */
  given(name: string): boolean;
}

export function parseFlags(command: string, args: readonly string[], spec: FlagSpec): ParsedFlags {
  const values = new Map(Object.entries(spec.values));
  const switches = new Set<string>();
  const given = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq);
    if (spec.switches?.includes(name) === true && eq < 0) {
      switches.add(name);
      continue;
    }
    if (!name.startsWith('--') || !values.has(name))
      throw new UsageError(`unknown option '${name}' for lanplug ${command}`);
    const value = eq < 0 ? args[++i] : arg.slice(eq + 1);
    if (value === undefined || value === '') throw new UsageError(`${name} needs a value`);
    values.set(name, value);
    given.add(name);
  }
  return {
    value: (name) => {
      const v = values.get(name);
      if (v === undefined) throw new Error(`flag ${name} is not declared`);
      return v;
    },
    on: (name) => switches.has(name),
    given: (name) => given.has(name),
  };
}
