/**
 * MTU bounds, the same for every link kind: IPv4 needs 68 bytes (RFC 791),
 * IPv6 1280 (RFC 8200), and Linux stores an MTU in 16 bits of IFLA_MTU's
 * range for Ethernet-like devices.
 */
export const MIN_MTU_IPV4 = 68;
export const MIN_MTU_IPV6 = 1280;
export const MAX_MTU = 65535;

export function isMtu(value: number): boolean {
  return Number.isInteger(value) && value >= MIN_MTU_IPV4 && value <= MAX_MTU;
}
