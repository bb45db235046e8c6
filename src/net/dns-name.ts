/**
 * Host names as DNS carries them (RFC 1035 §3.1): a name is labels of 1-63
 * bytes, each on the wire as its length then its bytes; a fully qualified
 * name ends with the root's empty label, a partial one (a DHCP client's
 * single label, RFC 4702 §2.3 / RFC 4704 §4.2, which the server completes
 * with its domain) does not. Used by the DHCP client FQDN options and mDNS
 * (encoding), and by DHCPv6's domain list (option 24, RFC 3646) and router
 * advertisements' DNSSL (RFC 8106), decoded here: a run of uncompressed names
 * padded with zero bytes.
 */

/** Letters, digits and '-' (RFC 1123 §2.1), as every DHCP server and resolver takes a host name's label. */
const HOST_LABEL = /^[A-Za-z0-9-]{1,63}$/;
/** RFC 1035 §2.3.4: 255 bytes on the wire, 253 as text. */
const NAME_MAX = 253;

/** Whether `name` is a host name: dot-separated labels of letters, digits and '-'. */
export function isHostName(name: string): boolean {
  return name.length <= NAME_MAX && name.split('.').every((label) => HOST_LABEL.test(label));
}

/** `name` in wire format; `qualified`: with the root label at the end. Labels must be 1-63 bytes. */
export function encodeDnsName(name: string, qualified: boolean): Buffer {
  const labels = name.split('.').filter((l) => l !== '');
  const parts = labels.map((l) => {
    const bytes = Buffer.from(l);
    if (bytes.length > 63) throw new RangeError(`DNS label '${l}' is longer than 63 bytes`);
    return Buffer.concat([Buffer.from([bytes.length]), bytes]);
  });
  return Buffer.concat([...parts, ...(qualified ? [Buffer.from([0])] : [])]);
}

/**
 * A DHCP client's name in wire format: a single label as a partial name (the
 * server adds its own domain), a dotted one as fully qualified.
 */
export function encodeClientName(name: string): Buffer {
  return encodeDnsName(name, name.includes('.'));
}

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
