/**
 * How an endpoint gets its MAC when the user gave none.
 *
 * Docker 20.10 derives a container's MAC from its IPv4 address: 02:42 followed
 * by the four address bytes (172.16.86.2 -> 02:42:ac:10:56:02). The seed
 * documents show exactly that, so lanplug does the same. The 02 first octet
 * marks the address locally administered and unicast.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ipv4Bytes, type IpAddress } from '../net/address';
import { bytesToMac } from '../net/mac';

export function macFromIpv4(address: IpAddress): string {
  return bytesToMac(Uint8Array.from([0x02, 0x42, ...ipv4Bytes(address)]));
}

/**
 * For endpoints without an IPv4 address (IPv6-only networks): random, with
 * the locally-administered bit set and the multicast bit clear, like the
 * kernel's own eth_random_addr().
 */
export function randomMac(random: (size: number) => Uint8Array = randomBytes): string {
  const bytes = Uint8Array.from(random(6));
  bytes[0] = ((bytes[0] ?? 0) & 0xfe) | 0x02;
  return bytesToMac(bytes);
}

/**
 * The MAC of one container's attachment, the same at each of its starts: a
 * hash of the attachment's key (network, container id, interface), locally
 * administered and unicast. Only where the runtime names the container at
 * every call (CNI); another container has another key, hence another MAC
 * (two of 2^46 alike is as likely as two random MACs alike).
 */
export function macFromKey(key: string): string {
  const bytes = Uint8Array.from(createHash('sha256').update(`lanplug.mac:${key}`).digest().subarray(0, 6));
  bytes[0] = ((bytes[0] ?? 0) & 0xfe) | 0x02;
  return bytesToMac(bytes);
}
