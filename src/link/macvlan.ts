/**
 * The macvlan link kind: its modes, and their IFLA_INFO_DATA encoding
 * (include/uapi/linux/if_link.h, IFLA_MACVLAN_*). The one place that knows
 * what a macvlan mode is: options, records and the kernel calls all ask here.
 */
import { nlaU32, readU32, type AttrMap } from '../netlink/codec';

/** In Docker's order, which its error messages list. */
export const MACVLAN_MODES = ['bridge', 'vepa', 'private', 'passthru'] as const;
export type MacvlanMode = (typeof MACVLAN_MODES)[number];

export function isMacvlanMode(text: string): text is MacvlanMode {
  return (MACVLAN_MODES as readonly string[]).includes(text);
}

const IFLA_MACVLAN_MODE = 1; // u32
const MODE_VALUE: Readonly<Record<MacvlanMode, number>> = { private: 1, vepa: 2, bridge: 4, passthru: 8 };

/** The IFLA_INFO_DATA attributes of a new macvlan link. */
export function encodeMacvlanData(mode: MacvlanMode): Buffer[] {
  return [nlaU32(IFLA_MACVLAN_MODE, MODE_VALUE[mode])];
}

/** The mode a dumped macvlan link reports; nothing for a value this code does not know. */
export function decodeMacvlanData(data: AttrMap): { macvlanMode?: MacvlanMode } {
  const value = readU32(data.get(IFLA_MACVLAN_MODE));
  const mode = MACVLAN_MODES.find((m) => MODE_VALUE[m] === value);
  return mode === undefined ? {} : { macvlanMode: mode };
}
