import { isIP } from 'node:net';

const PREFIX_LENGTH = /^(0|[1-9]\d{0,2})$/;

/**
 * Validates an IPv4 or IPv6 CIDR and returns it as `address/length`; a bare address means /32 or /128.
 * Zone ids (`fe80::1%eth0`) are refused: a peer address never carries one when compared.
 */
export function parseCidr(text: string): string | undefined {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  if (address.includes('%')) return undefined;
  const family = isIP(address);
  if (family === 0) return undefined;
  const maxLength = family === 4 ? 32 : 128;
  if (slash === -1) return `${address}/${maxLength}`;
  const lengthText = text.slice(slash + 1);
  if (!PREFIX_LENGTH.test(lengthText)) return undefined;
  const length = Number(lengthText);
  return length <= maxLength ? `${address}/${length}` : undefined;
}
