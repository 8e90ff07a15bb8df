// Address classifier: exact table cases at and around every range boundary, malformed input, the
// embedded-IPv4 forms, metadata names, unsafe-range validation; plus fast-check properties against
// an independent oracle (node:net BlockList built from the IANA registry by hand).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import fc from 'fast-check';
import {
  classifyAddress,
  formatIPv4,
  isMetadataHostname,
  isPublicAddress,
  parseCidr,
  parseIPv6,
  UnsafeRanges,
  type AddressCategory,
} from '../../src/egress/address.ts';

const cases: Array<[string, AddressCategory, string?]> = [
  // [address, category, embedded IPv4]
  ['8.8.8.8', 'public'],
  ['1.1.1.1', 'public'],
  ['93.184.216.34', 'public'],
  ['0.0.0.0', 'this_network'],
  ['0.255.255.255', 'this_network'],
  ['1.0.0.0', 'public'],
  ['9.255.255.255', 'public'],
  ['10.0.0.0', 'private'],
  ['10.255.255.255', 'private'],
  ['11.0.0.0', 'public'],
  ['100.63.255.255', 'public'],
  ['100.64.0.0', 'cgnat'],
  ['100.127.255.255', 'cgnat'],
  ['100.128.0.0', 'public'],
  ['126.255.255.255', 'public'],
  ['127.0.0.0', 'loopback'],
  ['127.255.255.255', 'loopback'],
  ['128.0.0.0', 'public'],
  ['169.253.255.255', 'public'],
  ['169.254.0.0', 'link_local'],
  ['169.254.169.254', 'metadata'],
  ['169.254.169.253', 'link_local'],
  ['169.254.170.2', 'metadata'],
  ['169.254.255.255', 'link_local'],
  ['169.255.0.0', 'public'],
  ['168.63.129.16', 'metadata'],
  ['168.63.129.17', 'public'],
  ['172.15.255.255', 'public'],
  ['172.16.0.0', 'private'],
  ['172.31.255.255', 'private'],
  ['172.32.0.0', 'public'],
  ['192.0.0.0', 'ietf_protocol'],
  ['192.0.0.192', 'metadata'],
  ['192.0.0.255', 'ietf_protocol'],
  ['192.0.1.0', 'public'],
  ['192.0.2.0', 'documentation'],
  ['192.0.2.255', 'documentation'],
  ['192.88.99.1', 'reserved'],
  ['192.167.255.255', 'public'],
  ['192.168.0.0', 'private'],
  ['192.168.255.255', 'private'],
  ['192.169.0.0', 'public'],
  ['198.17.255.255', 'public'],
  ['198.18.0.0', 'benchmarking'],
  ['198.19.255.255', 'benchmarking'],
  ['198.20.0.0', 'public'],
  ['198.51.100.7', 'documentation'],
  ['203.0.113.7', 'documentation'],
  ['223.255.255.255', 'public'],
  ['224.0.0.0', 'multicast'],
  ['239.255.255.255', 'multicast'],
  ['240.0.0.0', 'reserved'],
  ['255.255.255.254', 'reserved'],
  ['255.255.255.255', 'broadcast'],
  // IPv6
  ['::', 'unspecified'],
  ['::1', 'loopback'],
  ['[::1]', 'loopback'],
  ['0:0:0:0:0:0:0:1', 'loopback'],
  ['::2', 'this_network', '0.0.0.2'],
  ['::ffff:8.8.8.8', 'public', '8.8.8.8'],
  ['::ffff:127.0.0.1', 'loopback', '127.0.0.1'],
  ['::ffff:7f00:1', 'loopback', '127.0.0.1'],
  ['::ffff:a9fe:a9fe', 'metadata', '169.254.169.254'],
  ['::ffff:10.1.2.3', 'private', '10.1.2.3'],
  ['::ffff:0:0', 'this_network', '0.0.0.0'],
  ['::127.0.0.1', 'loopback', '127.0.0.1'],
  ['::a00:1', 'private', '10.0.0.1'],
  ['::ffff:0:808:808', 'reserved'], // SIIT "IPv4-translated", outside 2000::/3
  ['64:ff9b::8.8.8.8', 'nat64', '8.8.8.8'],
  ['64:ff9b::7f00:1', 'nat64', '127.0.0.1'],
  ['64:ff9b:1::1', 'nat64'],
  ['100::1', 'discard'],
  ['2001::1', 'teredo', '255.255.255.254'],
  ['2001:0:4136:e378:8000:63bf:80ff:fffe', 'teredo', '127.0.0.1'],
  ['2001:2::1', 'ietf_protocol'],
  ['2001:200::1', 'public'],
  ['2001:db8::1', 'documentation'],
  ['2001:db8:ffff::1', 'documentation'],
  ['2002:7f00:1::', 'sixtofour', '127.0.0.1'],
  ['2002:808:808::1', 'sixtofour', '8.8.8.8'],
  ['2606:4700:4700::1111', 'public'],
  ['2a00:1450:4001::200e', 'public'],
  ['3fff::1', 'documentation'],
  ['3fff:1000::1', 'public'],
  ['5f00::1', 'reserved'],
  ['4000::1', 'reserved'],
  ['fc00::1', 'unique_local'],
  ['fdff:ffff::1', 'unique_local'],
  ['fd00:ec2::254', 'metadata'],
  ['fe80::1', 'link_local'],
  ['febf::1', 'link_local'],
  ['fec0::1', 'site_local'],
  ['feff::1', 'site_local'],
  ['ff02::1', 'multicast'],
  ['ff0e::1', 'multicast'],
  // Malformed: never public, never interpreted.
  ['', 'invalid'],
  ['localhost', 'invalid'],
  ['127.1', 'invalid'],
  ['0177.0.0.1', 'invalid'],
  ['2130706433', 'invalid'],
  ['0x7f000001', 'invalid'],
  ['127.0.0.1.', 'invalid'],
  ['127.0.0.01', 'invalid'],
  ['256.0.0.1', 'invalid'],
  [' 8.8.8.8', 'invalid'],
  ['8.8.8.8/32', 'invalid'],
  ['fe80::1%eth0', 'invalid'],
  ['[8.8.8.8]', 'invalid'],
  ['::ffff:8.8.8', 'invalid'],
  ['1:2:3:4:5:6:7:8:9', 'invalid'],
  ['1::2::3', 'invalid'],
];

for (const [address, category, embedded] of cases) {
  test(`classify ${JSON.stringify(address)} -> ${category}`, () => {
    const c = classifyAddress(address);
    assert.equal(c.category, category);
    assert.equal(c.public, category === 'public');
    assert.equal(isPublicAddress(address), category === 'public');
    if (embedded !== undefined) assert.equal(c.embeddedIPv4, embedded);
  });
}

test('metadata host names: any case, trailing dot; look-alikes are not names of metadata', () => {
  for (const h of ['metadata.google.internal', 'METADATA.Google.Internal.', 'metadata', 'instance-data', 'metadata.goog']) {
    assert.equal(isMetadataHostname(h), true, h);
  }
  for (const h of ['metadata.example.com', 'google.internal', 'xmetadata', 'metadata.google.internal.evil.test']) {
    assert.equal(isMetadataHostname(h), false, h);
  }
});

test('parseCidr: canonical text; malformed blocks are TypeErrors', () => {
  assert.equal(parseCidr('10.0.0.0/8').text, '10.0.0.0/8');
  assert.equal(parseCidr('fd00::/8').prefix, 8);
  for (const bad of ['10.0.0.0', '10.0.0.1/8', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/08', 'x/8', '::/129', '10.0.0.0/8/8']) {
    assert.throws(() => parseCidr(bad), TypeError, bad);
  }
});

test('UnsafeRanges: accepts local blocks, refuses anything touching public space; metadata never matches', () => {
  const r = new UnsafeRanges(['127.0.0.0/8', '10.1.0.0/16', 'fd00::/8', '::1/128', '169.254.0.0/16']);
  assert.equal(r.match('127.0.0.1')?.text, '127.0.0.0/8');
  assert.equal(r.match('::ffff:127.0.0.1')?.text, '127.0.0.0/8');
  assert.equal(r.match('10.1.2.3')?.text, '10.1.0.0/16');
  assert.equal(r.match('10.2.0.1'), undefined);
  assert.equal(r.match('::1')?.text, '::1/128');
  assert.equal(r.match('169.254.1.1')?.text, '169.254.0.0/16');
  assert.equal(r.match('169.254.169.254'), undefined, 'metadata stays refused');
  assert.equal(r.match('::ffff:169.254.169.254'), undefined, 'metadata (v4-mapped) stays refused');
  assert.equal(r.match('fd00:ec2::254'), undefined, 'IPv6 metadata stays refused');
  assert.equal(r.match('8.8.8.8'), undefined);
  for (const bad of [['0.0.0.0/0'], ['8.0.0.0/8'], ['96.0.0.0/3'], ['::/0'], ['2000::/3'], ['fc00::/6'], ['224.0.0.0/8'], ['64:ff9b::/96'], ['2002::/16']]) {
    assert.throws(() => new UnsafeRanges(bad), TypeError, bad[0]);
  }
});

// --- properties -------------------------------------------------------------------------------

// An independent oracle: the IANA IPv4 special-purpose blocks (and the metadata /32s) typed in again.
const ORACLE_V4 = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15],
  ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4], ['168.63.129.16', 32],
] as const) {
  ORACLE_V4.addSubnet(net, prefix, 'ipv4');
}
const ORACLE_V6 = new BlockList();
for (const [net, prefix] of [
  ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64], ['2001::', 23], ['2001:db8::', 32],
  ['2002::', 16], ['3fff::', 20], ['5f00::', 16], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
] as const) {
  ORACLE_V6.addSubnet(net, prefix, 'ipv6');
}

const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));

test('property: IPv4 public iff outside every special-purpose block (BlockList oracle)', () => {
  fc.assert(
    fc.property(v4, (a) => {
      assert.equal(isPublicAddress(a), !ORACLE_V4.check(a, 'ipv4'), a);
    }),
    { numRuns: 8000 },
  );
});

test('property: v4-mapped IPv6 classifies exactly as its embedded IPv4', () => {
  fc.assert(
    fc.property(v4, (a) => {
      const plain = classifyAddress(a);
      const mapped = classifyAddress(`::ffff:${a}`);
      assert.equal(mapped.category, plain.category);
      assert.equal(mapped.embeddedIPv4, a);
    }),
    { numRuns: 5000 },
  );
});

const EMBEDS_V4 = new BlockList();
EMBEDS_V4.addSubnet('::', 96, 'ipv6');
EMBEDS_V4.addSubnet('::ffff:0:0', 96, 'ipv6');

const v6groups = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 });

test('property: IPv6 public iff in 2000::/3 and outside every special-purpose block', () => {
  fc.assert(
    fc.property(v6groups, fc.constantFrom(0, 0x2000, 0x2001, 0x2002, 0x3fff, 0xfc00, 0xfe80, 0xff00, 0x64), (g, first) => {
      if (first !== 0) g[0] = first;
      const a = g.map((x) => x.toString(16)).join(':');
      const inGlobal = ((g[0] ?? 0) & 0xe000) === 0x2000;
      const embedded = `${(g[6] ?? 0) >> 8}.${(g[6] ?? 0) & 255}.${(g[7] ?? 0) >> 8}.${(g[7] ?? 0) & 255}`;
      // v4-mapped and v4-compatible take the embedded IPv4's verdict; everything else the IPv6 tables.
      const expected = EMBEDS_V4.check(a, 'ipv6') ? !ORACLE_V4.check(embedded, 'ipv4') : inGlobal && !ORACLE_V6.check(a, 'ipv6');
      assert.equal(isPublicAddress(a), expected, a);
    }),
    { numRuns: 8000 },
  );
});

test('property: the IPv6 parser agrees with WHATWG canonical form (round trip)', () => {
  fc.assert(
    fc.property(v6groups, (g) => {
      const full = g.map((x) => x.toString(16)).join(':');
      const canonical = new URL(`http://[${full}]/`).hostname.slice(1, -1);
      assert.equal(parseIPv6(full), parseIPv6(canonical));
      assert.equal(classifyAddress(full).category, classifyAddress(canonical).category);
    }),
    { numRuns: 5000 },
  );
});

test('formatIPv4 / classification are total over the 32-bit space edges', () => {
  assert.equal(formatIPv4(0n), '0.0.0.0');
  assert.equal(formatIPv4(0xffffffffn), '255.255.255.255');
});
