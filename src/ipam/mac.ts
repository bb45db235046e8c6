/**
 * MAC addresses for endpoints.
 *
 * Docker 20.10 derives a container's MAC from its IPv4 address: 02:42 followed
 * by the four address bytes (172.16.86.2 -> 02:42:ac:10:56:02). The seed
 * documents show exactly that, so lanplug does the same. The 02 first octet
 * marks the address locally administered and unicast.
 */
import { randomBytes } from 'node:crypto';
import { invalidArgument } from '../errors';
import { bytesToMac, isMac } from '../netlink/codec';
import { ipv4Bytes, type IpAddress } from './address';

export function macFromIpv4(address: IpAddress): string {
  return formatMac([0x02, 0x42, ...ipv4Bytes(address)]);
}

/**
 * For endpoints without an IPv4 address (IPv6-only networks): random, with
 * the locally-administered bit set and the multicast bit clear, like the
 * kernel's own eth_random_addr().
 */
export function randomMac(random: (size: number) => Uint8Array = randomBytes): string {
  const bytes = Array.from(random(6));
  bytes[0] = ((bytes[0] ?? 0) & 0xfe) | 0x02;
  return formatMac(bytes);
}

/** Accepts any case and '-' separators; returns the canonical lower-case ':' form. */
export function parseMac(text: string): string {
  const canonical = text.trim().toLowerCase().replace(/-/g, ':');
  if (!isMac(canonical)) {
    throw invalidArgument(`MAC address '${text}' is not valid; expected six hex bytes such as 02:42:ac:10:56:02`);
  }
  const first = parseInt(canonical.slice(0, 2), 16);
  if ((first & 0x01) !== 0) {
    throw invalidArgument(`MAC address '${text}' is a multicast address; an endpoint needs a unicast MAC`);
  }
  if (canonical === '00:00:00:00:00:00') {
    throw invalidArgument(`MAC address '${text}' is all zeros; an endpoint needs a unicast MAC`);
  }
  return canonical;
}

function formatMac(bytes: number[]): string {
  return bytesToMac(Uint8Array.from(bytes));
}
