/**
 * The ipvlan link kind: its modes and flags, and their IFLA_INFO_DATA
 * encoding (include/uapi/linux/if_link.h, IFLA_IPVLAN_*). The kernel keeps
 * one mode per parent: every ipvlan on a parent shares it.
 */
import { nlaU16, readU16, type AttrMap } from '../netlink/codec';

export const IPVLAN_MODES = ['l2', 'l3', 'l3s'] as const;
export type IpvlanMode = (typeof IPVLAN_MODES)[number];
export const IPVLAN_FLAGS = ['bridge', 'private', 'vepa'] as const;
export type IpvlanFlag = (typeof IPVLAN_FLAGS)[number];

export function isIpvlanMode(text: string): text is IpvlanMode {
  return (IPVLAN_MODES as readonly string[]).includes(text);
}

export function isIpvlanFlag(text: string): text is IpvlanFlag {
  return (IPVLAN_FLAGS as readonly string[]).includes(text);
}

const IFLA_IPVLAN_MODE = 1; // u16
const IFLA_IPVLAN_FLAGS = 2; // u16
const MODE_VALUE: Readonly<Record<IpvlanMode, number>> = { l2: 0, l3: 1, l3s: 2 };
/** "bridge" is the absence of both flag bits. */
const FLAG_VALUE: Readonly<Record<IpvlanFlag, number>> = { bridge: 0, private: 0x01, vepa: 0x02 };

export function encodeIpvlanData(mode: IpvlanMode, flag: IpvlanFlag): Buffer[] {
  return [nlaU16(IFLA_IPVLAN_MODE, MODE_VALUE[mode]), nlaU16(IFLA_IPVLAN_FLAGS, FLAG_VALUE[flag])];
}

export function decodeIpvlanData(data: AttrMap): { ipvlanMode?: IpvlanMode; ipvlanFlag?: IpvlanFlag } {
  const modeValue = readU16(data.get(IFLA_IPVLAN_MODE));
  // Kernels before 4.15 send no flags attribute: that is bridge.
  const flagValue = readU16(data.get(IFLA_IPVLAN_FLAGS)) ?? FLAG_VALUE.bridge;
  const mode = IPVLAN_MODES.find((m) => MODE_VALUE[m] === modeValue);
  const flag = IPVLAN_FLAGS.find((f) => FLAG_VALUE[f] === flagValue);
  return { ...(mode === undefined ? {} : { ipvlanMode: mode }), ...(flag === undefined ? {} : { ipvlanFlag: flag }) };
}
