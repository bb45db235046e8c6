/**
 * DHCPv4 messages (RFC 2131 over BOOTP, options from RFC 2132): encode and
 * decode over Buffers, nothing else. The client's transactions are client.ts.
 */
import { addressBytes, addressFromBytes, type IpAddress } from '../net/address';
import { bytesToMac, macToBytes } from '../net/mac';

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;

const BOOTREQUEST = 1;
const BOOTREPLY = 2;
const FIXED_PART = 236;
const MAGIC_COOKIE = 0x63825363;
const FLAG_BROADCAST = 0x8000;
/** BOOTP's minimum message (RFC 1542 §2.1): some relays and servers drop shorter ones. */
const MINIMUM_LENGTH = 300;

/** Option codes lanplug sends or reads (RFC 2132 §3-§9). */
export const OPT = {
  subnetMask: 1,
  router: 3,
  dnsServers: 6,
  hostname: 12,
  domainName: 15,
  requestedAddress: 50,
  leaseTime: 51,
  messageType: 53,
  serverId: 54,
  parameterList: 55,
  message: 56,
  renewalTime: 58,
  rebindingTime: 59,
  vendorClass: 60,
  clientId: 61,
  end: 255,
  pad: 0,
} as const;

export const MESSAGE_TYPES = {
  discover: 1,
  offer: 2,
  request: 3,
  decline: 4,
  ack: 5,
  nak: 6,
  release: 7,
  inform: 8,
} as const;
export type MessageType = keyof typeof MESSAGE_TYPES;

export interface DhcpMessage {
  reply: boolean;
  xid: number;
  /** Seconds since the client began acquiring or renewing. */
  secs: number;
  /** Asks the server to broadcast its answer (a client that cannot receive unicast before it has an address). */
  broadcast: boolean;
  ciaddr: IpAddress;
  yiaddr: IpAddress;
  chaddr: string;
  type: MessageType;
  /** Every option but message type, by code, as its raw bytes. */
  options: Map<number, Buffer>;
}

export const ZERO_V4 = addressFromBytes(Buffer.alloc(4));
export const BROADCAST_V4 = addressFromBytes(Buffer.from([255, 255, 255, 255]));

export function encodeDhcp(m: DhcpMessage): Buffer {
  const optionBytes: Buffer[] = [Buffer.from([OPT.messageType, 1, MESSAGE_TYPES[m.type]])];
  for (const [code, value] of m.options) {
    // An option longer than 255 bytes would need RFC 3396 splitting; lanplug never sends one.
    optionBytes.push(Buffer.from([code, value.length]), value.subarray(0, 255));
  }
  optionBytes.push(Buffer.from([OPT.end]));
  const options = Buffer.concat(optionBytes);
  const out = Buffer.alloc(Math.max(MINIMUM_LENGTH, FIXED_PART + 4 + options.length));
  out[0] = m.reply ? BOOTREPLY : BOOTREQUEST;
  out[1] = 1; // htype Ethernet
  out[2] = 6; // hlen
  out.writeUInt32BE(m.xid >>> 0, 4);
  out.writeUInt16BE(Math.min(m.secs, 0xffff), 8);
  out.writeUInt16BE(m.broadcast ? FLAG_BROADCAST : 0, 10);
  addressBytes(m.ciaddr).copy(out, 12);
  addressBytes(m.yiaddr).copy(out, 16);
  macToBytes(m.chaddr).copy(out, 28);
  out.writeUInt32BE(MAGIC_COOKIE, FIXED_PART);
  options.copy(out, FIXED_PART + 4);
  return out;
}

/** A DHCP message, or null for a BOOTP packet without the magic cookie or message type, or anything malformed. */
export function decodeDhcp(b: Buffer): DhcpMessage | null {
  if (b.length < FIXED_PART + 4 || b[1] !== 1 || b[2] !== 6) return null;
  if (b.readUInt32BE(FIXED_PART) !== MAGIC_COOKIE) return null;
  const options = new Map<number, Buffer>();
  let type: MessageType | undefined;
  for (let off = FIXED_PART + 4; off < b.length;) {
    const code = b[off] ?? OPT.end;
    if (code === OPT.end) break;
    if (code === OPT.pad) {
      off += 1;
      continue;
    }
    const length = b[off + 1];
    if (length === undefined || off + 2 + length > b.length) return null;
    const value = Buffer.from(b.subarray(off + 2, off + 2 + length));
    if (code === OPT.messageType) type = messageTypeOf(value[0]);
    // RFC 3396: an option that appears twice is one option, concatenated.
    else options.set(code, Buffer.concat([options.get(code) ?? Buffer.alloc(0), value]));
    off += 2 + length;
  }
  if (type === undefined) return null;
  return {
    reply: b[0] === BOOTREPLY,
    xid: b.readUInt32BE(4),
    secs: b.readUInt16BE(8),
    broadcast: (b.readUInt16BE(10) & FLAG_BROADCAST) !== 0,
    ciaddr: addressFromBytes(b.subarray(12, 16)),
    yiaddr: addressFromBytes(b.subarray(16, 20)),
    chaddr: bytesToMac(b.subarray(28, 34)),
    type,
    options,
  };
}

function messageTypeOf(code: number | undefined): MessageType | undefined {
  return (Object.keys(MESSAGE_TYPES) as MessageType[]).find((t) => MESSAGE_TYPES[t] === code);
}

// ---- option values ----

export function ipv4Option(address: IpAddress): Buffer {
  return addressBytes(address);
}

export function secondsOption(seconds: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(seconds >>> 0, 0);
  return b;
}

/** The first address of an address-list option (router), or null. */
export function readAddress(options: Map<number, Buffer>, code: number): IpAddress | null {
  const v = options.get(code);
  return v === undefined || v.length < 4 ? null : addressFromBytes(v.subarray(0, 4));
}

/** Every address of an address-list option (DNS servers). */
export function readAddresses(options: Map<number, Buffer>, code: number): IpAddress[] {
  const v = options.get(code) ?? Buffer.alloc(0);
  const out: IpAddress[] = [];
  for (let off = 0; off + 4 <= v.length; off += 4) out.push(addressFromBytes(v.subarray(off, off + 4)));
  return out;
}

export function readSeconds(options: Map<number, Buffer>, code: number): number | null {
  const v = options.get(code);
  return v === undefined || v.length !== 4 ? null : v.readUInt32BE(0);
}

/** A subnet mask option as a prefix length, or null when absent or not contiguous. */
export function readPrefixLength(options: Map<number, Buffer>): number | null {
  const v = options.get(OPT.subnetMask);
  if (v === undefined || v.length !== 4) return null;
  const mask = v.readUInt32BE(0);
  const length = 32 - Math.log2(((~mask >>> 0) + 1) >>> 0 || 2 ** 32);
  return Number.isInteger(length) ? length : null;
}
