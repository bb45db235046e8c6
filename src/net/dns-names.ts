/**
 * Domain names as DHCPv6 (option 24, RFC 3646) and router advertisements (DNSSL,
 * RFC 8106) carry them: a run of names in DNS wire format, uncompressed (a length byte and that many
 * bytes per label, a zero byte ending each name), padded with zero bytes. Decode only.
 */

/**
 * The names in `b`, each as dotted text without the trailing dot. What cannot be a name (a label
 * running past the end, a compression pointer, a byte outside printable ASCII) ends the list there:
 * the names before it are kept, nothing of it.
 */
export function decodeDnsNames(b: Uint8Array): string[] {
  const names: string[] = [];
  let labels: string[] = [];
  for (let off = 0; off < b.length;) {
    const length = b[off] ?? 0;
    off += 1;
    if (length === 0) {
      if (labels.length > 0) names.push(labels.join('.'));
      labels = [];
      continue;
    }
    if (length > 63 || off + length > b.length) break;
    const label = Buffer.from(b.subarray(off, off + length)).toString('latin1');
    if (!/^[\x21-\x7e]+$/.test(label) || label.includes('.')) break;
    labels.push(label);
    off += length;
  }
  return names;
}
