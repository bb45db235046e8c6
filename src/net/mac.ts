/**
 * MAC addresses as text: the one format every layer uses ("02:42:ac:10:56:02",
 * lower case, colon-separated), and the conversions to and from the six bytes
 * the kernel carries in IFLA_ADDRESS.
 */
import { invalidArgument } from '../errors';

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** Six colon-separated hex bytes, in either case. */
export function isMac(text: string): boolean {
  return MAC_RE.test(text);
}

/** The multicast (I/G) bit: such an address can never be a device's own. */
export function isMulticastMac(mac: string): boolean {
  return (parseInt(mac.slice(0, 2), 16) & 0x01) !== 0;
}

/**
 * A MAC a user typed (`--mac-address`): any case, ':' or '-' separators.
 * Returns the canonical form; refuses multicast and all-zero addresses,
 * which the kernel would refuse as a device address.
 */
export function parseMac(text: string): string {
  const canonical = text.trim().toLowerCase().replace(/-/g, ':');
  if (!isMac(canonical)) {
    throw invalidArgument(`MAC address '${text}' is not valid; expected six hex bytes such as 02:42:ac:10:56:02`);
  }
  if (isMulticastMac(canonical)) {
    throw invalidArgument(`MAC address '${text}' is a multicast address; an endpoint needs a unicast MAC`);
  }
  if (canonical === '00:00:00:00:00:00') {
    throw invalidArgument(`MAC address '${text}' is all zeros; an endpoint needs a unicast MAC`);
  }
  return canonical;
}

/** 'aa:bb:cc:dd:ee:ff' -> 6 bytes. Throws RangeError on anything else (a bug in the caller). */
export function macToBytes(text: string): Buffer {
  if (!isMac(text))
    throw new RangeError(`MAC address must look like 02:42:ac:10:56:02, received: ${JSON.stringify(text)}`);
  return Buffer.from(text.split(':').map((h) => parseInt(h, 16)));
}

export function bytesToMac(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}
