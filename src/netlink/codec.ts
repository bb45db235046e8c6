/**
 * Netlink wire format: pure encode/decode over Buffers, no I/O.
 *
 * Layouts follow the kernel uapi headers (include/uapi/linux/netlink.h,
 * rtnetlink.h, if_link.h). Netlink uses the host's byte order; every host this
 * project targets (x86_64, arm64) is little-endian, so all integers here are
 * written little-endian and `assertLittleEndian` guards the assumption.
 *
 * Every constant below was checked against the uapi headers of the build host
 * (a C program printing them), not copied from another library.
 */
import { endianness } from 'node:os';

// ---- netlink.h ---------------------------------------------------------------

export const NETLINK_ROUTE = 0;

/** struct nlmsghdr: u32 len, u16 type, u16 flags, u32 seq, u32 pid. */
export const NLMSG_HDRLEN = 16;
/** struct nlattr: u16 len, u16 type. */
export const NLA_HDRLEN = 4;

export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;

export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_ACK = 0x04;
export const NLM_F_ECHO = 0x08;
export const NLM_F_DUMP_INTR = 0x10;
// Modifiers to GET requests.
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
// Modifiers to NEW requests.
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
// Flags on an NLMSG_ERROR (ACK) message.
/** The echoed request was cut to its header (NETLINK_CAP_ACK). */
export const NLM_F_CAPPED = 0x100;
/** Extended-ACK TLVs follow the echoed request. */
export const NLM_F_ACK_TLVS = 0x200;

export const NLA_F_NESTED = 1 << 15;
export const NLA_F_NET_BYTEORDER = 1 << 14;
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

/** enum nlmsgerr_attrs */
export const NLMSGERR_ATTR_MSG = 1;
export const NLMSGERR_ATTR_OFFS = 2;

// ---- rtnetlink.h ---------------------------------------------------------------

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;

/** struct ifinfomsg: u8 family, u8 pad, u16 type, s32 index, u32 flags, u32 change. */
export const IFINFOMSG_LEN = 16;
export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 10;

/** struct ifaddrmsg: u8 family, u8 prefixlen, u8 flags, u8 scope, u32 index. */
export const IFADDRMSG_LEN = 8;
export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_FLAGS = 8; // u32, supersedes ifa_flags
/** The address is usable at once: no duplicate address detection (IPv6). */
export const IFA_F_NODAD = 0x02;
export const IFA_F_DADFAILED = 0x08;
export const IFA_F_TENTATIVE = 0x40;
export const IFA_F_PERMANENT = 0x80;

/** struct rtmsg: u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags. */
export const RTMSG_LEN = 12;
export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_PREFSRC = 7;
export const RTA_TABLE = 15;
export const RT_TABLE_MAIN = 254;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_NOWHERE = 255;
export const RTN_UNICAST = 1;
/** Routes that drop what they match: silently, with ICMP host unreachable, with ICMP administratively prohibited. */
export const RTN_BLACKHOLE = 6;
export const RTN_UNREACHABLE = 7;
export const RTN_PROHIBIT = 8;
/** if.h: the interface is administratively up. */
export const IFF_UP = 0x1;
/** No ARP on the link: its stack neither answers nor sends ARP (a packet socket on it still can). */
export const IFF_NOARP = 0x80;

// ---- if_link.h -----------------------------------------------------------------

export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_LINKINFO = 18;
export const IFLA_AF_SPEC = 26;
export const IFLA_GROUP = 27;
/** u32: a network namespace file descriptor the link moves into. */
export const IFLA_NET_NS_FD = 28;
/** A dump request's filter mask (RTEXT_FILTER_*). */
export const IFLA_EXT_MASK = 29;
/** Leave the link's statistics out of a dump: ~25 % of each message, never read by lanplug. */
export const RTEXT_FILTER_SKIP_STATS = 1 << 3;
export const IFLA_LINK_NETNSID = 37;

/** Inside IFLA_AF_SPEC's AF_INET part: the link's IPv4 settings, one u32 per IPV4_DEVCONF_* index. */
export const IFLA_INET_CONF = 1;
/** IPV4_DEVCONF_* (linux/ip.h), 1-based: which local addresses the link names in the ARP it sends. */
export const IPV4_DEVCONF_ARP_ANNOUNCE = 18;
/** Which ARP requests the link answers. */
export const IPV4_DEVCONF_ARP_IGNORE = 19;
/** Inside IFLA_AF_SPEC's AF_INET6 part: how the kernel makes the link's IPv6 addresses. */
export const IFLA_INET6_ADDR_GEN_MODE = 8;
export const IN6_ADDR_GEN_MODE_NONE = 1;
export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;

// The IFLA_INFO_DATA attributes of each link kind live with that kind, in src/link/.

// ---- helpers -------------------------------------------------------------------

/** Netlink aligns headers and attributes to 4 bytes (NLMSG_ALIGN / NLA_ALIGN). */
export function align4(n: number): number {
  return (n + 3) & ~3;
}

export function assertLittleEndian(): void {
  if (endianness() !== 'LE') {
    throw new Error('netlink codec: only little-endian hosts are supported');
  }
}

/** A malformed message from the kernel; a bug either here or there. */
export class NetlinkDecodeError extends Error {
  constructor(message: string) {
    super(`netlink decode: ${message}`);
    this.name = 'NetlinkDecodeError';
  }
}

// ---- attributes: encode ----------------------------------------------------------

/**
 * One encoded attribute, padding included: nla_len counts header + payload
 * but not the trailing padding, while the next attribute starts at the
 * aligned offset. Returning the padded form lets callers simply concatenate.
 */
export function nla(type: number, payload: Uint8Array): Buffer {
  const len = NLA_HDRLEN + payload.length;
  if (len > 0xffff) throw new RangeError(`netlink attribute ${type} too long (${len} bytes)`);
  const out = Buffer.alloc(align4(len));
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  out.set(payload, NLA_HDRLEN);
  return out;
}

export function nlaU8(type: number, value: number): Buffer {
  const b = Buffer.alloc(1);
  b.writeUInt8(value, 0);
  return nla(type, b);
}

export function nlaU16(type: number, value: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(value, 0);
  return nla(type, b);
}

export function nlaU32(type: number, value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value, 0);
  return nla(type, b);
}

/** NLA_STRING / NLA_NUL_STRING: the kernel wants the terminating NUL, so we always send it. */
export function nlaString(type: number, value: string): Buffer {
  return nla(type, Buffer.from(`${value}\0`, 'utf8'));
}

/**
 * A nested attribute. NLA_F_NESTED is set by default: the kernel ignores it on
 * attributes it parses with the "deprecated" (lenient) parser such as
 * IFLA_LINKINFO, and strict policies require it; iproute2 omits it.
 */
export function nlaNested(type: number, children: readonly Uint8Array[], flagNested = true): Buffer {
  return nla(flagNested ? type | NLA_F_NESTED : type, Buffer.concat(children));
}

// ---- attributes: decode ----------------------------------------------------------

export interface NlAttr {
  /** Type with NLA_F_NESTED / NLA_F_NET_BYTEORDER masked off. */
  type: number;
  nested: boolean;
  /** Payload without header and padding (a view into the input). */
  value: Buffer;
}

/** Parses a run of attributes; a truncated attribute is an error, trailing padding is not. */
export function parseAttrs(buf: Uint8Array): NlAttr[] {
  const b = toBuffer(buf);
  const out: NlAttr[] = [];
  let off = 0;
  while (off + NLA_HDRLEN <= b.length) {
    const len = b.readUInt16LE(off);
    const rawType = b.readUInt16LE(off + 2);
    if (len < NLA_HDRLEN || off + len > b.length) {
      throw new NetlinkDecodeError(`attribute at offset ${off} has bad length ${len} (${b.length - off} bytes left)`);
    }
    out.push({
      type: rawType & NLA_TYPE_MASK,
      nested: (rawType & NLA_F_NESTED) !== 0,
      value: b.subarray(off + NLA_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Attribute payloads by type. */
export type AttrMap = ReadonlyMap<number, Buffer>;

/** Attributes by type; when a type repeats, the last one wins (as the kernel's nla_parse does). */
export function attrMap(attrs: readonly NlAttr[]): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  for (const a of attrs) m.set(a.type, a.value);
  return m;
}

export function readU16(value: Buffer | undefined): number | undefined {
  return value !== undefined && value.length >= 2 ? value.readUInt16LE(0) : undefined;
}

export function readU32(value: Buffer | undefined): number | undefined {
  return value !== undefined && value.length >= 4 ? value.readUInt32LE(0) : undefined;
}

/** NLA_STRING payloads may or may not carry a NUL; stop at the first one. */
export function readString(value: Buffer | undefined): string | undefined {
  if (value === undefined) return undefined;
  const nul = value.indexOf(0);
  return value.toString('utf8', 0, nul === -1 ? value.length : nul);
}

// ---- messages ------------------------------------------------------------------

export interface NlMsgHeader {
  type: number;
  flags: number;
  seq: number;
  /** Port id; 0 when sending to the kernel. */
  pid: number;
}

export interface NlMsg extends NlMsgHeader {
  /** Everything after the 16-byte header, up to nlmsg_len (a view into the input). */
  payload: Buffer;
}

/** One netlink message: header + body parts, total length aligned to 4 bytes (as iproute2 does). */
export function encodeMessage(header: NlMsgHeader, body: readonly Uint8Array[]): Buffer {
  const parts = body.map((p) => (p.length % 4 === 0 ? p : padTo4(p)));
  const len = NLMSG_HDRLEN + parts.reduce((n, p) => n + p.length, 0);
  const hdr = Buffer.alloc(NLMSG_HDRLEN);
  hdr.writeUInt32LE(len, 0);
  hdr.writeUInt16LE(header.type, 4);
  hdr.writeUInt16LE(header.flags, 6);
  hdr.writeUInt32LE(header.seq >>> 0, 8);
  hdr.writeUInt32LE(header.pid >>> 0, 12);
  return Buffer.concat([hdr, ...parts], len);
}

/** Splits one datagram into its messages. */
export function parseMessages(buf: Uint8Array): NlMsg[] {
  const b = toBuffer(buf);
  const out: NlMsg[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= b.length) {
    const len = b.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > b.length) {
      throw new NetlinkDecodeError(`message at offset ${off} has bad length ${len} (${b.length - off} bytes left)`);
    }
    out.push({
      type: b.readUInt16LE(off + 4),
      flags: b.readUInt16LE(off + 6),
      seq: b.readUInt32LE(off + 8),
      pid: b.readUInt32LE(off + 12),
      payload: b.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  if (off < b.length && b.length - off >= NLMSG_HDRLEN) {
    throw new NetlinkDecodeError(`${b.length - off} trailing bytes`);
  }
  return out;
}

// ---- ifinfomsg -----------------------------------------------------------------

export interface IfInfoMsg {
  family: number;
  /** ARPHRD_* */
  type: number;
  index: number;
  flags: number;
  change: number;
}

export function encodeIfInfoMsg(m: Partial<IfInfoMsg> = {}): Buffer {
  const b = Buffer.alloc(IFINFOMSG_LEN);
  b.writeUInt8(m.family ?? AF_UNSPEC, 0);
  // byte 1 is __ifi_pad
  b.writeUInt16LE(m.type ?? 0, 2);
  b.writeInt32LE(m.index ?? 0, 4);
  b.writeUInt32LE((m.flags ?? 0) >>> 0, 8);
  b.writeUInt32LE((m.change ?? 0) >>> 0, 12);
  return b;
}

/** An RTM_NEWLINK payload: the fixed header and the attributes after it. */
export function parseIfInfoMsg(payload: Buffer): { ifi: IfInfoMsg; attrs: NlAttr[] } {
  if (payload.length < IFINFOMSG_LEN) {
    throw new NetlinkDecodeError(`ifinfomsg needs ${IFINFOMSG_LEN} bytes, got ${payload.length}`);
  }
  const ifi: IfInfoMsg = {
    family: payload.readUInt8(0),
    type: payload.readUInt16LE(2),
    index: payload.readInt32LE(4),
    flags: payload.readUInt32LE(8),
    change: payload.readUInt32LE(12),
  };
  return { ifi, attrs: parseAttrs(payload.subarray(IFINFOMSG_LEN)) };
}

// ---- ifaddrmsg -----------------------------------------------------------------

export interface IfAddrMsg {
  family: number;
  prefixLength: number;
  flags: number;
  scope: number;
  index: number;
}

export function encodeIfAddrMsg(m: IfAddrMsg): Buffer {
  const b = Buffer.alloc(IFADDRMSG_LEN);
  b.writeUInt8(m.family, 0);
  b.writeUInt8(m.prefixLength, 1);
  b.writeUInt8(m.flags, 2);
  b.writeUInt8(m.scope, 3);
  b.writeUInt32LE(m.index >>> 0, 4);
  return b;
}

export function parseIfAddrMsg(payload: Buffer): { ifa: IfAddrMsg; attrs: NlAttr[] } {
  if (payload.length < IFADDRMSG_LEN)
    throw new NetlinkDecodeError(`ifaddrmsg needs ${IFADDRMSG_LEN} bytes, got ${payload.length}`);
  const ifa: IfAddrMsg = {
    family: payload.readUInt8(0),
    prefixLength: payload.readUInt8(1),
    flags: payload.readUInt8(2),
    scope: payload.readUInt8(3),
    index: payload.readUInt32LE(4),
  };
  return { ifa, attrs: parseAttrs(payload.subarray(IFADDRMSG_LEN)) };
}

// ---- rtmsg ---------------------------------------------------------------------

export interface RtMsg {
  family: number;
  dstLength: number;
  srcLength: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}

export function encodeRtMsg(m: Partial<RtMsg> & { family: number }): Buffer {
  const b = Buffer.alloc(RTMSG_LEN);
  b.writeUInt8(m.family, 0);
  b.writeUInt8(m.dstLength ?? 0, 1);
  b.writeUInt8(m.srcLength ?? 0, 2);
  b.writeUInt8(m.tos ?? 0, 3);
  b.writeUInt8(m.table ?? 0, 4);
  b.writeUInt8(m.protocol ?? 0, 5);
  b.writeUInt8(m.scope ?? 0, 6);
  b.writeUInt8(m.type ?? 0, 7);
  b.writeUInt32LE((m.flags ?? 0) >>> 0, 8);
  return b;
}

export function parseRtMsg(payload: Buffer): { rtm: RtMsg; attrs: NlAttr[] } {
  if (payload.length < RTMSG_LEN) throw new NetlinkDecodeError(`rtmsg needs ${RTMSG_LEN} bytes, got ${payload.length}`);
  const rtm: RtMsg = {
    family: payload.readUInt8(0),
    dstLength: payload.readUInt8(1),
    srcLength: payload.readUInt8(2),
    tos: payload.readUInt8(3),
    table: payload.readUInt8(4),
    protocol: payload.readUInt8(5),
    scope: payload.readUInt8(6),
    type: payload.readUInt8(7),
    flags: payload.readUInt32LE(8),
  };
  return { rtm, attrs: parseAttrs(payload.subarray(RTMSG_LEN)) };
}

// ---- NLMSG_ERROR / NLMSG_DONE ----------------------------------------------------

export interface NlError {
  /** 0 for a plain ACK, else a negative errno (as the kernel sends it). */
  error: number;
  /** Header of the request this answers (echoed by the kernel). */
  request: NlMsgHeader;
  /** NLMSGERR_ATTR_MSG: the kernel's human-readable reason, when it gave one. */
  extackMsg?: string;
  /** NLMSGERR_ATTR_OFFS: byte offset of the offending attribute in the request. */
  extackOffset?: number;
}

/**
 * struct nlmsgerr: s32 error, then the request's nlmsghdr; then the request's
 * payload unless the ACK is capped (NLM_F_CAPPED, set when the socket has
 * NETLINK_CAP_ACK or for a successful ACK); then, if NLM_F_ACK_TLVS, the
 * extended-ACK attributes. `flags` is the NLMSG_ERROR message's own flags.
 */
export function parseError(payload: Buffer, flags: number): NlError {
  if (payload.length < 4 + NLMSG_HDRLEN) {
    throw new NetlinkDecodeError(`NLMSG_ERROR needs ${4 + NLMSG_HDRLEN} bytes, got ${payload.length}`);
  }
  const error = payload.readInt32LE(0);
  const reqLen = payload.readUInt32LE(4);
  const request: NlMsgHeader = {
    type: payload.readUInt16LE(8),
    flags: payload.readUInt16LE(10),
    seq: payload.readUInt32LE(12),
    pid: payload.readUInt32LE(16),
  };
  const out: NlError = { error, request };
  if ((flags & NLM_F_ACK_TLVS) === 0) return out;
  // The kernel caps the echo for successful ACKs too, but does not always set
  // NLM_F_CAPPED then; success never carries an echoed payload.
  const echoed = (flags & NLM_F_CAPPED) !== 0 || error === 0 ? NLMSG_HDRLEN : reqLen;
  const tlvStart = 4 + align4(echoed);
  if (tlvStart > payload.length) {
    throw new NetlinkDecodeError(`NLMSG_ERROR echo of ${echoed} bytes exceeds payload of ${payload.length}`);
  }
  const attrs = attrMap(parseAttrs(payload.subarray(tlvStart)));
  const msg = readString(attrs.get(NLMSGERR_ATTR_MSG));
  if (msg !== undefined && msg !== '') out.extackMsg = msg;
  const offs = readU32(attrs.get(NLMSGERR_ATTR_OFFS));
  if (offs !== undefined) out.extackOffset = offs;
  return out;
}

/**
 * NLMSG_DONE carries an s32 (0, or a negative errno when the dump failed half
 * way) and, with NLM_F_ACK_TLVS, extended-ACK attributes right after it.
 */
export function parseDone(payload: Buffer, flags: number): { error: number; extackMsg?: string } {
  if (payload.length < 4) return { error: 0 };
  const error = payload.readInt32LE(0);
  if ((flags & NLM_F_ACK_TLVS) === 0) return { error };
  const msg = readString(attrMap(parseAttrs(payload.subarray(4))).get(NLMSGERR_ATTR_MSG));
  return msg !== undefined && msg !== '' ? { error, extackMsg: msg } : { error };
}

function padTo4(p: Uint8Array): Buffer {
  const out = Buffer.alloc(align4(p.length));
  out.set(p, 0);
  return out;
}

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
