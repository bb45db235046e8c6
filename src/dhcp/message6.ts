/**
 * DHCPv6 messages (RFC 8415): a type, a 24-bit transaction id, and options
 * (16-bit code, 16-bit length), some of which (IA_NA) nest options of their
 * own. Encode and decode only; the client's transactions are client6.ts.
 */
import { addressBytes, addressFromBytes, type IpAddress } from '../net/address';
import { encodeClientName } from '../net/dns-name';

export const DHCP6_CLIENT_PORT = 546;
export const DHCP6_SERVER_PORT = 547;

export const MESSAGE6_TYPES = {
  solicit: 1,
  advertise: 2,
  request: 3,
  renew: 5,
  rebind: 6,
  reply: 7,
  release: 8,
  decline: 9,
  'information-request': 11,
} as const;
export type Message6Type = keyof typeof MESSAGE6_TYPES;

/** Option codes lanplug sends or reads (RFC 8415 §21, RFC 3646, RFC 4704). */
export const OPT6 = {
  clientId: 1,
  serverId: 2,
  iaNa: 3,
  iaAddr: 5,
  oro: 6,
  elapsedTime: 8,
  statusCode: 13,
  dnsServers: 23,
  domainList: 24,
  clientFqdn: 39,
} as const;

/** RFC 8415 §21.13 status codes lanplug acts on. */
export const STATUS6 = {
  success: 0,
  unspecFail: 1,
  noAddrsAvail: 2,
  noBinding: 3,
  notOnLink: 4,
  useMulticast: 5,
} as const;

/** The names RFC 8415 §21.13 gives them, for messages. */
export const STATUS6_NAMES: Readonly<Record<number, string>> = {
  [STATUS6.unspecFail]: 'UnspecFail',
  [STATUS6.noAddrsAvail]: 'NoAddrsAvail',
  [STATUS6.noBinding]: 'NoBinding',
  [STATUS6.notOnLink]: 'NotOnLink',
  [STATUS6.useMulticast]: 'UseMulticast',
};

export interface Dhcp6Option {
  code: number;
  value: Buffer;
}

export interface Dhcp6Message {
  type: Message6Type;
  /** 24 bits. */
  xid: number;
  options: Dhcp6Option[];
}

/** One address of an IA_NA, with its lifetimes in seconds. */
export interface IaAddress {
  address: IpAddress;
  preferredSeconds: number;
  validSeconds: number;
}

/** An identity association for non-temporary addresses (RFC 8415 §21.4). */
export interface IaNa {
  iaid: number;
  renewSeconds: number;
  rebindSeconds: number;
  addresses: IaAddress[];
  /** The IA's own status, when the server put one in it. */
  status: number | null;
}

export function encodeOptions(options: readonly Dhcp6Option[]): Buffer {
  return Buffer.concat(
    options.flatMap((o) => {
      const header = Buffer.alloc(4);
      header.writeUInt16BE(o.code, 0);
      header.writeUInt16BE(o.value.length, 2);
      return [header, o.value];
    }),
  );
}

export function decodeOptions(b: Buffer): Dhcp6Option[] | null {
  const out: Dhcp6Option[] = [];
  for (let off = 0; off < b.length;) {
    if (off + 4 > b.length) return null;
    const length = b.readUInt16BE(off + 2);
    if (off + 4 + length > b.length) return null;
    out.push({ code: b.readUInt16BE(off), value: Buffer.from(b.subarray(off + 4, off + 4 + length)) });
    off += 4 + length;
  }
  return out;
}

export function encodeDhcp6(m: Dhcp6Message): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(m.xid & 0xffffff, 0);
  head[0] = MESSAGE6_TYPES[m.type];
  return Buffer.concat([head, encodeOptions(m.options)]);
}

export function decodeDhcp6(b: Buffer): Dhcp6Message | null {
  if (b.length < 4) return null;
  const type = (Object.keys(MESSAGE6_TYPES) as Message6Type[]).find((t) => MESSAGE6_TYPES[t] === b[0]);
  const options = decodeOptions(b.subarray(4));
  if (type === undefined || options === null) return null;
  return { type, xid: b.readUInt32BE(0) & 0xffffff, options };
}

export function option(m: Dhcp6Message, code: number): Buffer | null {
  return m.options.find((o) => o.code === code)?.value ?? null;
}

export function encodeIaNa(ia: IaNa): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt32BE(ia.iaid >>> 0, 0);
  head.writeUInt32BE(ia.renewSeconds >>> 0, 4);
  head.writeUInt32BE(ia.rebindSeconds >>> 0, 8);
  const addresses = ia.addresses.map((a) => {
    const v = Buffer.alloc(24);
    addressBytes(a.address).copy(v, 0);
    v.writeUInt32BE(a.preferredSeconds >>> 0, 16);
    v.writeUInt32BE(a.validSeconds >>> 0, 20);
    return { code: OPT6.iaAddr, value: v };
  });
  return Buffer.concat([head, encodeOptions(addresses)]);
}

export function decodeIaNa(value: Buffer): IaNa | null {
  if (value.length < 12) return null;
  const inner = decodeOptions(value.subarray(12));
  if (inner === null) return null;
  const addresses: IaAddress[] = [];
  let status: number | null = null;
  for (const o of inner) {
    if (o.code === OPT6.iaAddr && o.value.length >= 24) {
      // An address the server gives a zero valid lifetime is one it takes back.
      const validSeconds = o.value.readUInt32BE(20);
      if (validSeconds > 0)
        addresses.push({
          address: addressFromBytes(o.value.subarray(0, 16)),
          preferredSeconds: o.value.readUInt32BE(16),
          validSeconds,
        });
    }
    if (o.code === OPT6.statusCode && o.value.length >= 2) status = o.value.readUInt16BE(0);
  }
  return {
    iaid: value.readUInt32BE(0),
    renewSeconds: value.readUInt32BE(4),
    rebindSeconds: value.readUInt32BE(8),
    addresses,
    status,
  };
}

/** The message-level status code (absent means success). */
export function statusOf(m: Dhcp6Message): { code: number; text: string } {
  const v = option(m, OPT6.statusCode);
  if (v === null || v.length < 2) return { code: STATUS6.success, text: '' };
  return {
    code: v.readUInt16BE(0),
    text: v
      .subarray(2)
      .toString('utf8')
      .replace(/[^\x20-\x7e]/g, '?'),
  };
}

/**
 * RFC 4704 client FQDN: flag S (§4.1: the server is asked to update the AAAA
 * record; lanplug's containers update no DNS themselves), the name in DNS
 * wire format: a single label as a partial name, a dotted one fully qualified
 * (§4.2).
 */
export function fqdnOption(hostname: string): Buffer {
  return Buffer.concat([Buffer.from([FQDN6_FLAG_S]), encodeClientName(hostname)]);
}

/** RFC 4704 §4.1: S, the client asks the server to update the name's AAAA record. */
const FQDN6_FLAG_S = 0x01;
