/**
 * The kernel's rule for link names (dev_valid_name in net/core/dev.c): 1 to
 * IFNAMSIZ-1 = 15 bytes, not "." or "..", no '/', ':' or whitespace. Kept in
 * one place: the netlink layer refuses bad names as a last guard, and the
 * driver turns the same verdict into a message for the user.
 */
export const MAX_IFNAME_BYTES = 15;

export type IfnameProblem = 'empty' | 'too-long' | 'dots' | 'bad-character';

export function ifnameProblem(name: string): IfnameProblem | null {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 0) return 'empty';
  if (bytes > MAX_IFNAME_BYTES) return 'too-long';
  if (name === '.' || name === '..') return 'dots';
  // Control characters are refused too: they would garble every log line and `ip link` listing.
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  if (/[/:\s\u0000-\u001f\u007f]/.test(name)) return 'bad-character';
  return null;
}
