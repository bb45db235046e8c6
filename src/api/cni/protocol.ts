/**
 * The wire between lanplug's CNI executables and the daemon: a unix socket
 * of its own (root-only), one connection per invocation, no JSON in the
 * executable. The executable writes the CNI_* variables it was given, each
 * `NAME=value` and a NUL, then an empty entry (a second NUL), then its stdin
 * as it came, and half-closes. The daemon answers the exit code in decimal
 * and a newline, then what the executable prints on stdout, and closes.
 */

/**
 * The variables the executable forwards: the CNI spec's, nothing else of the runtime's environment;
 * and, when netavark calls it as a plugin (`<command> [netns]` as arguments), those two as
 * NETAVARK_COMMAND and NETAVARK_NETNS (src/api/netavark/commands.ts).
 */
export const FORWARDED_VARIABLES = [
  'CNI_COMMAND',
  'CNI_CONTAINERID',
  'CNI_NETNS',
  'CNI_IFNAME',
  'CNI_ARGS',
  'CNI_PATH',
  'NETAVARK_COMMAND',
  'NETAVARK_NETNS',
] as const;

/** A network configuration is a few kB; this bounds what one connection may make the daemon hold. */
export const MAX_REQUEST_BYTES = 1 << 20;

export interface CniInvocation {
  env: ReadonlyMap<string, string>;
  stdin: string;
}

export interface CniAnswer {
  exitCode: number;
  stdout: string;
}

/** null when the bytes are not a request (no end of the variables, or a variable that is not NAME=value). */
export function decodeInvocation(bytes: Buffer): CniInvocation | null {
  const env = new Map<string, string>();
  let at = 0;
  for (;;) {
    const nul = bytes.indexOf(0, at);
    if (nul < 0) return null;
    if (nul === at) break; // the empty entry: stdin follows
    const entry = bytes.subarray(at, nul).toString('utf8');
    const eq = entry.indexOf('=');
    if (eq <= 0) return null;
    const name = entry.slice(0, eq);
    if ((FORWARDED_VARIABLES as readonly string[]).includes(name)) env.set(name, entry.slice(eq + 1));
    at = nul + 1;
  }
  return { env, stdin: bytes.subarray(at + 1).toString('utf8') };
}

export function encodeInvocation(invocation: CniInvocation): Buffer {
  const entries = [...invocation.env].map(([name, value]) => Buffer.from(`${name}=${value}\0`, 'utf8'));
  return Buffer.concat([...entries, Buffer.from([0]), Buffer.from(invocation.stdin, 'utf8')]);
}

export function encodeAnswer(answer: CniAnswer): Buffer {
  return Buffer.from(`${answer.exitCode}\n${answer.stdout}`, 'utf8');
}

/** null when the daemon's bytes do not start with an exit code line. */
export function decodeAnswer(bytes: Buffer): CniAnswer | null {
  const newline = bytes.indexOf(10);
  if (newline < 1) return null;
  const code = bytes.subarray(0, newline).toString('ascii');
  if (!/^\d{1,3}$/.test(code)) return null;
  return { exitCode: Number(code), stdout: bytes.subarray(newline + 1).toString('utf8') };
}
