/**
 * The 802.1Q vlan link kind: a sub-interface `eth0.50` carrying VLAN 50 of
 * its base link. Owns the VLAN id range and the IFLA_VLAN_ID encoding.
 */
import { nlaU16, readU16, type AttrMap } from '../netlink/codec';

/** 0 and 4095 are reserved by IEEE 802.1Q. */
export const VLAN_ID_MIN = 1;
export const VLAN_ID_MAX = 4094;

export function isVlanId(value: number): boolean {
  return Number.isInteger(value) && value >= VLAN_ID_MIN && value <= VLAN_ID_MAX;
}

const IFLA_VLAN_ID = 1; // u16

export function encodeVlanData(vlanId: number): Buffer[] {
  return [nlaU16(IFLA_VLAN_ID, vlanId)];
}

export function decodeVlanData(data: AttrMap): { vlanId?: number } {
  const id = readU16(data.get(IFLA_VLAN_ID));
  return id === undefined ? {} : { vlanId: id };
}
