// Classifies IP addresses by exact bit math over a fixed table of special-purpose ranges (IANA
// IPv4/IPv6 special-purpose registries plus cloud metadata endpoints). Only `public` may be reached;
// malformed input is `invalid`, never public. v4-mapped / v4-compatible IPv6 take the embedded IPv4's class.
import { isIPv4, isIPv6 } from 'node:net';

/** Why an address is (not) reachable. Everything except `public` is refused by the egress guard. */
export type AddressCategory =
  | 'public'
  | 'invalid'
  | 'unspecified'
  | 'this_network'
  | 'loopback'
  | 'private'
  | 'cgnat'
  | 'link_local'
  | 'metadata'
  | 'ietf_protocol'
  | 'documentation'
  | 'benchmarking'
  | 'multicast'
  | 'reserved'
  | 'broadcast'
  | 'unique_local'
  | 'site_local'
  | 'discard'
  | 'nat64'
  | 'sixtofour'
  | 'teredo';

export interface AddressClassification {
  /** The address as given. */
  address: string;
  /** 4 or 6; 0 when the input is not an IP address. */
  family: 0 | 4 | 6;
  category: AddressCategory;
  /** True only for `public`. */
  public: boolean;
  /** For v4-mapped, v4-compatible, NAT64, 6to4 and Teredo: the embedded IPv4 (Teredo: the de-obfuscated client). */
  embeddedIPv4?: string;
  /** The embedded IPv4's own category (diagnostics; for mapped/compatible it is also `category`). */
  embeddedCategory?: AddressCategory;
}

/** A parsed address: family and value as an unsigned integer (32 or 128 bits). */
export interface ParsedAddress {
  family: 4 | 6;
  value: bigint;
}

/** A parsed CIDR block. */
export interface Cidr {
  family: 4 | 6;
  base: bigint;
  prefix: number;
  /** Canonical text, e.g. `127.0.0.0/8`. */
  text: string;
}

type Marker = AddressCategory | 'ipv4_mapped' | 'ipv4_compatible';

interface RangeEntry {
  cidr: Cidr;
  category: Marker;
}

const BITS = { 4: 32, 6: 128 } as const;

function maskOf(family: 4 | 6, prefix: number): bigint {
  const bits = BITS[family];
  if (prefix === 0) return 0n;
  return ((1n << BigInt(prefix)) - 1n) << BigInt(bits - prefix);
}

/** Parses a strict dotted-quad IPv4 (no leading zeros, no short forms) into a 32-bit value. */
export function parseIPv4(text: string): bigint | undefined {
  if (!isIPv4(text)) return undefined;
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    // net.isIPv4 already refuses leading zeros; this keeps the parser exact even if it ever did not.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

/** Parses an IPv6 address (with optional dotted IPv4 tail; zone ids refused) into a 128-bit value. */
export function parseIPv6(text: string): bigint | undefined {
  if (text.includes('%') || !isIPv6(text)) return undefined;
  let head = text;
  const groups: number[] = [];
  let tail: number[] = [];
  // A dotted IPv4 tail becomes two 16-bit groups.
  const lastColon = head.lastIndexOf(':');
  const maybeV4 = head.slice(lastColon + 1);
  if (maybeV4.includes('.')) {
    const v4 = parseIPv4(maybeV4);
    if (v4 === undefined) return undefined;
    tail = [Number(v4 >> 16n), Number(v4 & 0xffffn)];
    head = head.slice(0, lastColon + 1);
    // "::1.2.3.4" leaves "::", "a::1.2.3.4" leaves "a::", "a:b:...:1.2.3.4" leaves "a:b:...:".
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const parseGroups = (s: string): number[] | undefined => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const dbl = head.indexOf('::');
  if (dbl >= 0) {
    if (head.indexOf('::', dbl + 1) >= 0) return undefined;
    const left = parseGroups(head.slice(0, dbl));
    const right = parseGroups(head.slice(dbl + 2));
    if (!left || !right) return undefined;
    const fill = 8 - left.length - right.length - tail.length;
    if (fill < 1) return undefined;
    groups.push(...left, ...new Array<number>(fill).fill(0), ...right, ...tail);
  } else {
    const all = parseGroups(head);
    if (!all) return undefined;
    groups.push(...all, ...tail);
  }
  if (groups.length !== 8) return undefined;
  let value = 0n;
  for (const g of groups) value = (value << 16n) | BigInt(g);
  return value;
}

/** Parses an IPv4 or IPv6 address (IPv6 may be bracketed). Undefined when it is not exactly an IP. */
export function parseAddress(text: string): ParsedAddress | undefined {
  const v4 = parseIPv4(text);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const inner = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const v6 = parseIPv6(inner);
  if (v6 !== undefined) return { family: 6, value: v6 };
  return undefined;
}

/** Formats a 32-bit value as dotted quad. */
export function formatIPv4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String(Number((value >> s) & 0xffn))).join('.');
}

/** Formats a 128-bit value as a canonical (RFC 5952, as WHATWG serializes) IPv6 address. */
export function formatIPv6(value: bigint): string {
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn).toString(16));
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

/** Parses `addr/prefix`. Throws TypeError on a malformed block or host bits set below the prefix. */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  if (slash < 0) throw new TypeError(`invalid CIDR ${JSON.stringify(text)}: missing /prefix`);
  const addr = parseAddress(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (!addr) throw new TypeError(`invalid CIDR ${JSON.stringify(text)}: not an IP address`);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) throw new TypeError(`invalid CIDR ${JSON.stringify(text)}: bad prefix`);
  const prefix = Number(prefixText);
  if (prefix > BITS[addr.family]) throw new TypeError(`invalid CIDR ${JSON.stringify(text)}: prefix too long`);
  const mask = maskOf(addr.family, prefix);
  if ((addr.value & mask) !== addr.value) {
    throw new TypeError(`invalid CIDR ${JSON.stringify(text)}: host bits set below the prefix`);
  }
  const base = addr.family === 4 ? formatIPv4(addr.value) : formatIPv6(addr.value);
  return { family: addr.family, base: addr.value, prefix, text: `${base}/${prefix}` };
}

/** True when `addr` lies inside `cidr` (same family only). */
export function cidrContains(cidr: Cidr, addr: ParsedAddress): boolean {
  if (cidr.family !== addr.family) return false;
  return (addr.value & maskOf(cidr.family, cidr.prefix)) === cidr.base;
}

/** True when every address of `inner` lies inside `outer`. */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.family === outer.family && inner.prefix >= outer.prefix && cidrContains(outer, { family: inner.family, value: inner.base });
}

function table(rows: ReadonlyArray<readonly [string, Marker]>): RangeEntry[] {
  // Most specific first, so the first hit is the narrowest label (metadata /32 before link-local /16).
  return rows.map(([c, category]) => ({ cidr: parseCidr(c), category })).sort((a, b) => b.cidr.prefix - a.cidr.prefix);
}

/** Cloud metadata / host-agent endpoints, refused even inside an unsafe local-test range. */
const METADATA_ROWS: ReadonlyArray<readonly [string, Marker]> = [
  ['169.254.169.254/32', 'metadata'], // AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
  ['169.254.170.2/32', 'metadata'], // AWS ECS task metadata / credentials
  ['169.254.170.23/32', 'metadata'], // AWS EKS pod identity agent
  ['168.63.129.16/32', 'metadata'], // Azure WireServer (a public address, deliberately refused)
  ['100.100.100.200/32', 'metadata'], // Alibaba Cloud
  ['192.0.0.192/32', 'metadata'], // Oracle Cloud (legacy)
  ['fd00:ec2::254/128', 'metadata'], // AWS IMDS over IPv6
  ['fd00:ec2::23/128', 'metadata'], // AWS EKS pod identity agent over IPv6
];

const IPV4_TABLE = table([
  ...METADATA_ROWS.filter(([c]) => !c.includes(':')),
  ['0.0.0.0/8', 'this_network'],
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'cgnat'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link_local'],
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'ietf_protocol'],
  ['192.0.2.0/24', 'documentation'],
  ['192.88.99.0/24', 'reserved'], // deprecated 6to4 relay anycast
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'benchmarking'],
  ['198.51.100.0/24', 'documentation'],
  ['203.0.113.0/24', 'documentation'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved'],
  ['255.255.255.255/32', 'broadcast'],
]);

const IPV6_TABLE = table([
  ...METADATA_ROWS.filter(([c]) => c.includes(':')),
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['::ffff:0:0/96', 'ipv4_mapped'],
  ['::/96', 'ipv4_compatible'],
  ['64:ff9b::/96', 'nat64'],
  ['64:ff9b:1::/48', 'nat64'], // local-use NAT64 (RFC 8215)
  ['100::/64', 'discard'],
  ['2001::/32', 'teredo'],
  ['2001::/23', 'ietf_protocol'],
  ['2001:db8::/32', 'documentation'],
  ['2002::/16', 'sixtofour'],
  ['3fff::/20', 'documentation'],
  ['5f00::/16', 'reserved'], // SRv6 SIDs
  ['fc00::/7', 'unique_local'],
  ['fe80::/10', 'link_local'],
  ['fec0::/10', 'site_local'],
  ['ff00::/8', 'multicast'],
]);

/** The well-known NAT64 prefix: the IPv4 is the low 32 bits (the local-use /48 has no fixed layout). */
const IPV6_TABLE_NAT64_WKP = parseCidr('64:ff9b::/96');

/** Global unicast space; IPv6 outside it (and outside the table) is reserved/unassigned. */
const IPV6_GLOBAL_UNICAST = parseCidr('2000::/3');

function lookupMarker(addr: ParsedAddress): Marker {
  const rows = addr.family === 4 ? IPV4_TABLE : IPV6_TABLE;
  for (const row of rows) if (cidrContains(row.cidr, addr)) return row.category;
  if (addr.family === 6 && !cidrContains(IPV6_GLOBAL_UNICAST, addr)) return 'reserved';
  return 'public';
}

function classifyV4Value(value: bigint): AddressCategory {
  return lookupMarker({ family: 4, value }) as AddressCategory;
}

/** Classifies a parsed address (see {@link classifyAddress}). */
export function classifyParsed(address: string, addr: ParsedAddress): AddressClassification {
  const marker = lookupMarker(addr);
  if (addr.family === 4) {
    const category = marker as AddressCategory;
    return { address, family: 4, category, public: category === 'public' };
  }
  const low32 = addr.value & 0xffffffffn;
  switch (marker) {
    case 'ipv4_mapped':
    case 'ipv4_compatible': {
      const embeddedCategory = classifyV4Value(low32);
      return {
        address,
        family: 6,
        category: embeddedCategory,
        public: embeddedCategory === 'public',
        embeddedIPv4: formatIPv4(low32),
        embeddedCategory,
      };
    }
    case 'nat64':
    case 'sixtofour':
    case 'teredo': {
      let embedded: bigint | undefined;
      if (marker === 'nat64' && cidrContains(IPV6_TABLE_NAT64_WKP, addr)) embedded = low32;
      if (marker === 'sixtofour') embedded = (addr.value >> 80n) & 0xffffffffn;
      if (marker === 'teredo') embedded = low32 ^ 0xffffffffn; // client address is stored inverted
      const base: AddressClassification = { address, family: 6, category: marker, public: false };
      if (embedded === undefined) return base;
      return { ...base, embeddedIPv4: formatIPv4(embedded), embeddedCategory: classifyV4Value(embedded) };
    }
    default: {
      const category = marker as AddressCategory;
      return { address, family: 6, category, public: category === 'public' };
    }
  }
}

/**
 * Classifies one IP address (IPv4 dotted quad or IPv6, optionally bracketed). Anything that is not
 * exactly an IP address is `invalid`. Only `public` is reachable through the egress guard.
 */
export function classifyAddress(address: string): AddressClassification {
  const parsed = parseAddress(address);
  if (!parsed) return { address, family: 0, category: 'invalid', public: false };
  return classifyParsed(address, parsed);
}

/** True only when the address parses and is public. */
export function isPublicAddress(address: string): boolean {
  return classifyAddress(address).public;
}

/** Host names of metadata services, refused by name (before any DNS). Compared lowercase, without a trailing dot. */
export const METADATA_HOSTNAMES: ReadonlySet<string> = new Set([
  'metadata',
  'metadata.google.internal',
  'metadata.goog',
  'metadata.azure.com',
  'metadata.azure.internal',
  'instance-data',
  'instance-data.ec2.internal',
  'metadata.ec2.internal',
  'metadata.tencentyun.com',
  'metadata.platformequinix.com',
]);

/** True when `host` (any case, optional trailing dot) names a cloud metadata service. */
export function isMetadataHostname(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return METADATA_HOSTNAMES.has(h);
}

/** Categories an unsafe local-test range may lie within (never metadata, multicast, reserved, embeddings). */
const UNSAFE_RANGE_PARENTS: readonly RangeEntry[] = [...IPV4_TABLE, ...IPV6_TABLE].filter((r) =>
  ['loopback', 'private', 'link_local', 'cgnat', 'unique_local', 'documentation', 'benchmarking'].includes(r.category),
);

/**
 * A set of unsafe local-test CIDR ranges. Each range must lie entirely inside one loopback, private,
 * link-local, CGNAT, ULA, documentation or benchmarking block, so the escape hatch can never open
 * public space; metadata addresses stay refused inside it.
 */
export class UnsafeRanges {
  readonly ranges: readonly Cidr[];

  /** Throws TypeError for a malformed range or one that is not entirely inside a local block. */
  constructor(cidrs: readonly string[]) {
    if (!Array.isArray(cidrs)) throw new TypeError('unsafeAllow must be an array of CIDR strings');
    this.ranges = cidrs.map((text) => {
      if (typeof text !== 'string') throw new TypeError('unsafeAllow entries must be CIDR strings');
      const cidr = parseCidr(text);
      if (!UNSAFE_RANGE_PARENTS.some((p) => cidrWithin(cidr, p.cidr))) {
        throw new TypeError(
          `unsafeAllow ${cidr.text} is not entirely inside a loopback, private, link-local, CGNAT, ULA, documentation or benchmarking block`,
        );
      }
      return cidr;
    });
  }

  get size(): number {
    return this.ranges.length;
  }

  /** The range containing the address (v4-mapped IPv6 is matched as its IPv4), unless it is a metadata address. */
  match(address: string): Cidr | undefined {
    const parsed = parseAddress(address);
    if (!parsed) return undefined;
    if (classifyParsed(address, parsed).category === 'metadata') return undefined;
    const candidates: ParsedAddress[] = [parsed];
    if (parsed.family === 6 && (parsed.value >> 32n) === 0xffffn) {
      candidates.push({ family: 4, value: parsed.value & 0xffffffffn });
    }
    for (const cidr of this.ranges) for (const c of candidates) if (cidrContains(cidr, c)) return cidr;
    return undefined;
  }
}
