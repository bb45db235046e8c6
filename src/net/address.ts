/**
 * IP addresses and prefixes as plain values. Docker hands us addresses as
 * strings ("172.16.86.2/24", "2001:db8::10/64", "172.16.86.1"); everything
 * past the API edge works with these parsed forms instead.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { invalidArgument } from '../errors';

export type Family = 4 | 6;

export interface IpAddress {
  family: Family;
  /** The address as an unsigned integer (32 or 128 bits). */
  value: bigint;
  text: string;
}

export interface IpPrefix {
  address: IpAddress;
  prefixLength: number;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

/** One address, whatever its text looks like ("2001:db8::1" and "2001:DB8:0::1"); null is the same as null only. */
export function sameAddress(a: IpAddress | null, b: IpAddress | null): boolean {
  return a?.value === b?.value && a?.family === b?.family;
}

export function parseAddress(text: string, what = 'address'): IpAddress {
  if (isIPv4(text)) {
    const value = text.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
    return { family: 4, value, text };
  }
  if (isIPv6(text) && !text.includes('%')) {
    return { family: 6, value: ipv6ToBigint(text), text: formatIpv6(ipv6ToBigint(text)) };
  }
  throw invalidArgument(`${what} '${text}' is not an IPv4 or IPv6 address`);
}

/** "172.16.86.2/24" -> address 172.16.86.2, prefix 24 (host bits are kept). */
export function parsePrefix(text: string, what = 'prefix'): IpPrefix {
  const slash = text.indexOf('/');
  if (slash < 0) throw invalidArgument(`${what} '${text}' has no prefix length; expected the form 172.16.86.0/24`);
  const address = parseAddress(text.slice(0, slash), what);
  const lengthText = text.slice(slash + 1);
  const prefixLength = Number(lengthText);
  if (!/^\d{1,3}$/.test(lengthText) || prefixLength > BITS[address.family]) {
    throw invalidArgument(`${what} '${text}' has an invalid prefix length; expected 0-${BITS[address.family]}`);
  }
  return { address, prefixLength };
}

/** True when `address` lies inside `prefix` (same family, same leading bits). */
export function prefixContains(prefix: IpPrefix, address: IpAddress): boolean {
  if (prefix.address.family !== address.family) return false;
  const hostBits = BigInt(BITS[address.family] - prefix.prefixLength);
  return prefix.address.value >> hostBits === address.value >> hostBits;
}

export function formatPrefix(prefix: IpPrefix): string {
  return `${prefix.address.text}/${prefix.prefixLength}`;
}

/** The four bytes of an IPv4 address, most significant first. */
export function ipv4Bytes(address: IpAddress): number[] {
  if (address.family !== 4) throw invalidArgument(`'${address.text}' is not an IPv4 address`);
  return [24n, 16n, 8n, 0n].map((shift) => Number((address.value >> shift) & 0xffn));
}

function ipv6ToBigint(text: string): bigint {
  // An embedded IPv4 tail ("::ffff:1.2.3.4") becomes two hextets first.
  let body = text;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(body);
  if (v4?.[1] !== undefined) {
    const octets = v4[1].split('.').map(Number);
    const [a = 0, b = 0, c = 0, d = 0] = octets;
    body = body.slice(0, -v4[1].length) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16);
  }
  const [head = '', tail] = body.split('::');
  const headParts = head === '' ? [] : head.split(':');
  const tailParts = tail === undefined || tail === '' ? [] : tail.split(':');
  const missing = 8 - headParts.length - tailParts.length;
  const parts = [...headParts, ...Array<string>(tail === undefined ? 0 : missing).fill('0'), ...tailParts];
  return parts.reduce((acc, part) => (acc << 16n) | BigInt(parseInt(part, 16)), 0n);
}

/** RFC 5952 text form: lower case, longest zero run compressed. */
function formatIpv6(value: bigint): string {
  const hextets = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (hextets[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && hextets[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = hextets.map((h) => h.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** The address in network byte order: 4 or 16 bytes, as the kernel carries it in IFA_* and RTA_* attributes. */
export function addressBytes(address: IpAddress): Buffer {
  const length = address.family === 4 ? 4 : 16;
  const out = Buffer.alloc(length);
  let value = address.value;
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return out;
}

/** 4 or 16 bytes in network byte order -> the address. */
export function addressFromBytes(bytes: Uint8Array): IpAddress {
  if (bytes.length !== 4 && bytes.length !== 16)
    throw invalidArgument(`an address is 4 or 16 bytes, not ${bytes.length}`);
  const value = Array.from(bytes).reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
  if (bytes.length === 4) return { family: 4, value, text: Array.from(bytes).join('.') };
  return { family: 6, value, text: formatIpv6(value) };
}

/** The host prefix of an address: /32 or /128. */
export function hostPrefix(address: IpAddress): IpPrefix {
  return { address, prefixLength: BITS[address.family] };
}

/** The address with this numeric value in a family. */
export function addressFromValue(family: Family, value: bigint): IpAddress {
  if (family === 4)
    return { family, value, text: [24n, 16n, 8n, 0n].map((s) => Number((value >> s) & 0xffn)).join('.') };
  return { family, value, text: formatIpv6(value) };
}

/** The first and last address of a prefix (host bits all zero, all one). */
export function prefixBounds(prefix: IpPrefix): { first: bigint; last: bigint } {
  const hostBits = BigInt(BITS[prefix.address.family] - prefix.prefixLength);
  const first = (prefix.address.value >> hostBits) << hostBits;
  return { first, last: first + (1n << hostBits) - 1n };
}

/** The prefix with its host bits cleared: 172.16.86.7/24 -> 172.16.86.0/24. */
export function networkOf(prefix: IpPrefix): IpPrefix {
  return {
    address: addressFromValue(prefix.address.family, prefixBounds(prefix).first),
    prefixLength: prefix.prefixLength,
  };
}

/** True when the two prefixes share any address. */
export function prefixesOverlap(a: IpPrefix, b: IpPrefix): boolean {
  if (a.address.family !== b.address.family) return false;
  const x = prefixBounds(a);
  const y = prefixBounds(b);
  return x.first <= y.last && y.first <= x.last;
}
