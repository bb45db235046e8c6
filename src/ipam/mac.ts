/**
 * How an endpoint gets its MAC when the user gave none.
 *
 * Docker 20.10 derives a container's MAC from its IPv4 address: 02:42 followed
 * by the four address bytes (172.16.86.2 -> 02:42:ac:10:56:02). The seed
 * documents show exactly that, so lanplug does the same. The 02 first octet
 * marks the address locally administered and unicast.
 */
import { randomBytes } from 'node:crypto';
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
