/**
 * DHCPv4 messages (RFC 2131 over BOOTP, options from RFC 2132): encode and
 * decode over Buffers, nothing else. The client's transactions are client.ts.
 */
import { addressBytes, addressFromBytes, type IpAddress } from '../net/address';
import { bytesToMac, macToBytes } from '../net/mac';
import { LanplugError } from '../errors';
import { encodeClientName } from '../net/dns-name';

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
  clientFqdn: 81,
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
    // The length is one byte: a longer value would be cut, its tail read by the server as options of
    // their own. RFC 3396 splitting is not worth having while lanplug sends none this long; refused.
    if (value.length > 255)
      throw new LanplugError('Internal', `DHCP option ${code} is ${value.length} bytes long; at most 255 fit`);
    optionBytes.push(Buffer.from([code, value.length]), value);
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
  const parsed = parseDhcp(b);
  return typeof parsed === 'string' ? null : parsed;
}

/**
 * A DHCP message, or why `b` is none, in words for a log line. An option list
 * that runs past the end makes the whole message malformed, as ISC dhclient and
 * systemd-networkd take it: what its framing says after that cannot be trusted.
 */
export function parseDhcp(b: Buffer): DhcpMessage | string {
  if (b.length < FIXED_PART + 4) return `${b.length} bytes, shorter than a DHCP message`;
  if (b[1] !== 1 || b[2] !== 6) return 'not an Ethernet client (htype, hlen)';
  if (b.readUInt32BE(FIXED_PART) !== MAGIC_COOKIE) return 'no DHCP magic cookie (a BOOTP message)';
  const options = new Map<number, Buffer>();
  let type: MessageType | undefined;
  let typeCode: number | undefined;
  for (let off = FIXED_PART + 4; off < b.length;) {
    const code = b[off] ?? OPT.end;
    if (code === OPT.end) break;
    if (code === OPT.pad) {
      off += 1;
      continue;
    }
    const length = b[off + 1];
    if (length === undefined || off + 2 + length > b.length) return `option ${code} runs past the end of the message`;
    const value = Buffer.from(b.subarray(off + 2, off + 2 + length));
    if (code === OPT.messageType) {
      typeCode = value[0];
      type = messageTypeOf(typeCode);
    }
    // RFC 3396: an option that appears twice is one option, concatenated.
    else options.set(code, Buffer.concat([options.get(code) ?? Buffer.alloc(0), value]));
    off += 2 + length;
  }
  if (type === undefined)
    return typeCode === undefined ? 'no message type (option 53)' : `unknown message type ${typeCode}`;
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

/**
 * Whether `b` starts as a server's reply to transaction `xid` of the client `chaddr` (the fixed
 * fields only): a reply meant for this client that does not decode is worth a log line, someone
 * else's is not.
 */
export function isReplyTo(b: Buffer, xid: number, chaddr: string): boolean {
  return (
    b.length >= 34 && b[0] === BOOTREPLY && b.readUInt32BE(4) === xid >>> 0 && bytesToMac(b.subarray(28, 34)) === chaddr
  );
}

/** The options lanplug reads whose value has a fixed form (RFC 2132), and that form. */
const OPTION_FORMS: ReadonlyMap<number, { name: string; check: (v: Buffer) => string | null }> = new Map([
  [
    OPT.subnetMask,
    { name: 'subnet mask', check: (v) => exactly(v, 4) ?? (readMask(v) === null ? 'not a contiguous mask' : null) },
  ],
  [OPT.router, { name: 'router', check: (v) => addressList(v) }],
  [OPT.dnsServers, { name: 'DNS servers', check: (v) => addressList(v) }],
  [OPT.leaseTime, { name: 'lease time', check: (v) => exactly(v, 4) }],
  [OPT.serverId, { name: 'server identifier', check: (v) => exactly(v, 4) }],
  [OPT.renewalTime, { name: 'renewal time', check: (v) => exactly(v, 4) }],
  [OPT.rebindingTime, { name: 'rebinding time', check: (v) => exactly(v, 4) }],
]);

function exactly(v: Buffer, length: number): string | null {
  return v.length === length ? null : `${v.length} bytes where ${length} belong`;
}

function addressList(v: Buffer): string | null {
  return v.length >= 4 && v.length % 4 === 0 ? null : `${v.length} bytes, not a list of IPv4 addresses`;
}

/**
 * The options of a server's answer that lanplug reads and that are not of their form (a lease time
 * of 3 bytes, a mask with holes): each is ignored as if absent, and this says which and why.
 */
export function malformedOptions(options: Map<number, Buffer>): { option: number; name: string; why: string }[] {
  const out: { option: number; name: string; why: string }[] = [];
  for (const [option, form] of OPTION_FORMS) {
    const value = options.get(option);
    const why = value === undefined ? null : form.check(value);
    if (why !== null) out.push({ option, name: form.name, why });
  }
  return out;
}

function messageTypeOf(code: number | undefined): MessageType | undefined {
  return (Object.keys(MESSAGE_TYPES) as MessageType[]).find((t) => MESSAGE_TYPES[t] === code);
}

// ---- option values ----

export function ipv4Option(address: IpAddress): Buffer {
  return addressBytes(address);
}

/**
 * RFC 4702 client FQDN: flags S and E, RCODE1 and RCODE2 0 (§2.2: deprecated,
 * sent as 0), the name in DNS wire format (E; the ASCII form is deprecated,
 * §2.3.1), a single label as a partial name the server completes with its
 * domain. S (§2.1, §3.3): the server updates the A record; the container
 * updates no DNS itself. dnsmasq registers the name either way; Windows'
 * server, by default, only for a client that sends this option.
 */
export function clientFqdnOption(name: string): Buffer {
  return Buffer.concat([Buffer.from([FQDN_FLAG_S | FQDN_FLAG_E, 0, 0]), encodeClientName(name)]);
}

/** RFC 4702 §2.1: S, the client asks the server to update the name's A record. */
const FQDN_FLAG_S = 0x01;
/** RFC 4702 §2.1: E, the name is in canonical wire format. */
const FQDN_FLAG_E = 0x04;

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
  return v === undefined || v.length !== 4 ? null : readMask(v);
}

function readMask(v: Buffer): number | null {
  const mask = v.readUInt32BE(0);
  const length = 32 - Math.log2(((~mask >>> 0) + 1) >>> 0 || 2 ** 32);
  return Number.isInteger(length) ? length : null;
}
