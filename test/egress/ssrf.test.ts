// SSRF suite through the real EgressGuard.fetch path: every case is a request a hostile provider (or
// a hostile upstream's redirect) could make; each must be refused with the stated code and reason,
// before any byte reaches a private address. Addresses are allowlisted where the case says so, so
// that the address rules (not the allowlist) are what refuses them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EgressGuard } from '../../src/egress/guard.ts';
import type { EgressProfile } from '../../src/contracts.ts';
import type { GateErrorCode } from '../../src/errors.ts';
import { isGate, LIMITS, startUpstream, tableResolver } from './fixtures.ts';

interface Case {
  name: string;
  url: string;
  method?: string;
  headers?: Record<string, string>;
  code: GateErrorCode;
  extra?: Record<string, unknown>;
  /** Add the URL's own (WHATWG-canonical) host to the allowlist. */
  list?: boolean;
  /** Expected resolver calls (default: not checked). */
  dns?: number;
}

const resolver = tableResolver({
  'allowed.test': ['93.184.216.34'],
  'internal.allowed.test': ['10.0.0.5'],
  'meta.allowed.test': ['169.254.169.254'],
  'v6loop.allowed.test': ['::1'],
  'mapped.allowed.test': ['::ffff:127.0.0.1'],
  'nat64.allowed.test': ['64:ff9b::a9fe:a9fe'],
  'sixtofour.allowed.test': ['2002:c0a8:101::1'],
  'ula.allowed.test': ['fd12:3456::1'],
  'mixed.allowed.test': ['93.184.216.34', '10.0.0.1'],
  'mixed-last.allowed.test': ['93.184.216.34', '93.184.216.35', '127.0.0.1'],
  'mixed6.allowed.test': ['2606:4700::1111', 'fd00::1'],
  'garbage.allowed.test': ['not-an-ip'],
  'octal.allowed.test': ['0177.0.0.1'],
  'zone.allowed.test': ['fe80::1%eth0'],
  'empty.allowed.test': [],
  'cgnat.allowed.test': ['100.64.0.7'],
  'bench.allowed.test': ['198.18.0.9'],
  'rebind.allowed.test': (n) => (n === 1 ? ['10.0.0.1'] : ['93.184.216.34']),
});

const BASE_DOMAINS = ['allowed.test', '.allowed.test', '*.wild.test', 'metadata.google.internal', 'metadata', 'instance-data'];

function profileFor(c: Case): EgressProfile {
  const domains = [...BASE_DOMAINS];
  if (c.list) domains.push(new URL(c.url).hostname);
  return { allowed_domains: domains, allowed_methods: ['GET', 'POST'], allowed_ports: [443] };
}

const addr = (category: string) => ({ reason: 'address_not_public', category });

const cases: Case[] = [
  // IPv4 spellings of 127.0.0.1: the WHATWG parser normalizes them; the address rule refuses them.
  { name: 'loopback 127.0.0.1 literal', url: 'https://127.0.0.1/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'loopback as decimal integer 2130706433', url: 'https://2130706433/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'loopback as hex integer 0x7f000001', url: 'https://0x7f000001/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'loopback as octal integer 017700000001', url: 'https://017700000001/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'loopback dotted octal 0177.0.0.1', url: 'https://0177.0.0.1/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'loopback dotted hex 0x7f.0.0.1', url: 'https://0x7f.0.0.1/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'loopback short form 127.1', url: 'https://127.1/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'loopback short form 127.0.1', url: 'https://127.0.1/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'loopback short hex 0x7f.1', url: 'https://0x7f.1/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'loopback zero-padded 127.000.000.001', url: 'https://127.000.000.001/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'loopback with trailing dot 127.0.0.1.', url: 'https://127.0.0.1./', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'loopback percent-encoded host %31%32%37.0.0.1', url: 'https://%31%32%37.0.0.1/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'loopback other than .1 (127.0.0.2)', url: 'https://127.0.0.2/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'this-network 0 (0.0.0.0)', url: 'https://0/', list: true, code: 'egress_address_denied', extra: addr('this_network') },
  // Cloud metadata 169.254.169.254 in every spelling.
  { name: 'metadata 169.254.169.254 literal', url: 'https://169.254.169.254/latest/meta-data/', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'metadata as decimal 2852039166', url: 'https://2852039166/', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'metadata as hex 0xa9fea9fe', url: 'https://0xa9fea9fe/', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'metadata as octal 025177524776', url: 'https://025177524776/', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'metadata dotted octal 0251.0376.0251.0376', url: 'https://0251.0376.0251.0376/', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'metadata dotted hex 0xa9.0xfe.0xa9.0xfe', url: 'https://0xa9.0xfe.0xa9.0xfe/', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'metadata short form 169.254.43518', url: 'https://169.254.43518/', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'metadata short form 169.16689662', url: 'https://169.16689662/', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'ECS task credentials 169.254.170.2', url: 'https://169.254.170.2/v2/credentials', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'Azure WireServer 168.63.129.16 (public-looking)', url: 'https://168.63.129.16/', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'Alibaba metadata 100.100.100.200', url: 'https://100.100.100.200/', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'Oracle metadata 192.0.0.192', url: 'https://192.0.0.192/', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'other link-local 169.254.1.1', url: 'https://169.254.1.1/', list: true, code: 'egress_address_denied', extra: addr('link_local') },
  // Private and special-purpose IPv4.
  { name: 'RFC1918 10.0.0.1', url: 'https://10.0.0.1/', list: true, code: 'egress_address_denied', extra: addr('private') },
  { name: 'RFC1918 172.16.0.1', url: 'https://172.16.0.1/', list: true, code: 'egress_address_denied', extra: addr('private') },
  { name: 'RFC1918 172.31.255.255', url: 'https://172.31.255.255/', list: true, code: 'egress_address_denied', extra: addr('private') },
  { name: 'RFC1918 192.168.1.1', url: 'https://192.168.1.1/', list: true, code: 'egress_address_denied', extra: addr('private') },
  { name: 'CGNAT 100.64.0.1', url: 'https://100.64.0.1/', list: true, code: 'egress_address_denied', extra: addr('cgnat') },
  { name: 'unspecified 0.0.0.0', url: 'https://0.0.0.0/', list: true, code: 'egress_address_denied', extra: addr('this_network') },
  { name: 'IETF protocol block 192.0.0.8', url: 'https://192.0.0.8/', list: true, code: 'egress_address_denied', extra: addr('ietf_protocol') },
  { name: 'TEST-NET-1 192.0.2.1', url: 'https://192.0.2.1/', list: true, code: 'egress_address_denied', extra: addr('documentation') },
  { name: 'TEST-NET-2 198.51.100.1', url: 'https://198.51.100.1/', list: true, code: 'egress_address_denied', extra: addr('documentation') },
  { name: 'TEST-NET-3 203.0.113.1', url: 'https://203.0.113.1/', list: true, code: 'egress_address_denied', extra: addr('documentation') },
  { name: 'benchmarking 198.19.255.1', url: 'https://198.19.255.1/', list: true, code: 'egress_address_denied', extra: addr('benchmarking') },
  { name: 'multicast 224.0.0.1', url: 'https://224.0.0.1/', list: true, code: 'egress_address_denied', extra: addr('multicast') },
  { name: 'reserved 240.0.0.1', url: 'https://240.0.0.1/', list: true, code: 'egress_address_denied', extra: addr('reserved') },
  { name: 'broadcast 255.255.255.255', url: 'https://255.255.255.255/', list: true, code: 'egress_address_denied', extra: addr('broadcast') },
  // IPv6 forms and embeddings.
  { name: 'IPv6 loopback [::1]', url: 'https://[::1]/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'IPv6 loopback uncompressed [0:0:0:0:0:0:0:1]', url: 'https://[0:0:0:0:0:0:0:1]/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'IPv6 unspecified [::]', url: 'https://[::]/', list: true, code: 'egress_address_denied', extra: addr('unspecified') },
  { name: 'v4-mapped loopback [::ffff:127.0.0.1]', url: 'https://[::ffff:127.0.0.1]/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'v4-mapped loopback hex [::ffff:7f00:1]', url: 'https://[::ffff:7f00:1]/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'v4-mapped metadata [0:0:0:0:0:ffff:a9fe:a9fe]', url: 'https://[0:0:0:0:0:ffff:a9fe:a9fe]/', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'v4-mapped metadata dotted [::ffff:169.254.169.254]', url: 'https://[::ffff:169.254.169.254]/', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'v4-mapped private [::ffff:10.0.0.1]', url: 'https://[::ffff:10.0.0.1]/', list: true, code: 'egress_address_denied', extra: addr('private') },
  { name: 'v4-compatible loopback [::127.0.0.1]', url: 'https://[::127.0.0.1]/', list: true, code: 'egress_address_denied', extra: addr('loopback') },
  { name: 'NAT64 embedding loopback [64:ff9b::7f00:1]', url: 'https://[64:ff9b::7f00:1]/', list: true, code: 'egress_address_denied', extra: addr('nat64') },
  { name: 'NAT64 embedding metadata [64:ff9b::169.254.169.254]', url: 'https://[64:ff9b::169.254.169.254]/', list: true, code: 'egress_address_denied', extra: addr('nat64') },
  { name: 'local-use NAT64 [64:ff9b:1::a00:1]', url: 'https://[64:ff9b:1::a00:1]/', list: true, code: 'egress_address_denied', extra: addr('nat64') },
  { name: '6to4 embedding loopback [2002:7f00:1::]', url: 'https://[2002:7f00:1::]/', list: true, code: 'egress_address_denied', extra: addr('sixtofour') },
  { name: '6to4 embedding metadata [2002:a9fe:a9fe::1]', url: 'https://[2002:a9fe:a9fe::1]/', list: true, code: 'egress_address_denied', extra: addr('sixtofour') },
  { name: 'Teredo with obfuscated loopback client', url: 'https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/', list: true, code: 'egress_address_denied', extra: addr('teredo') },
  { name: 'IPv6 link-local [fe80::1]', url: 'https://[fe80::1]/', list: true, code: 'egress_address_denied', extra: addr('link_local') },
  { name: 'IPv6 ULA [fc00::1]', url: 'https://[fc00::1]/', list: true, code: 'egress_address_denied', extra: addr('unique_local') },
  { name: 'AWS IMDS over IPv6 [fd00:ec2::254]', url: 'https://[fd00:ec2::254]/', list: true, code: 'egress_address_denied', extra: addr('metadata') },
  { name: 'IPv6 site-local [fec0::1]', url: 'https://[fec0::1]/', list: true, code: 'egress_address_denied', extra: addr('site_local') },
  { name: 'IPv6 multicast [ff02::1]', url: 'https://[ff02::1]/', list: true, code: 'egress_address_denied', extra: addr('multicast') },
  { name: 'IPv6 documentation [2001:db8::1]', url: 'https://[2001:db8::1]/', list: true, code: 'egress_address_denied', extra: addr('documentation') },
  { name: 'IPv6 discard-only [100::1]', url: 'https://[100::1]/', list: true, code: 'egress_address_denied', extra: addr('discard') },
  { name: 'IPv6 outside 2000::/3 [4000::1]', url: 'https://[4000::1]/', list: true, code: 'egress_address_denied', extra: addr('reserved') },
  { name: 'IPv6 zone id [fe80::1%25eth0]', url: 'https://[fe80::1%25eth0]/', code: 'egress_denied', extra: { reason: 'url_invalid' } },
  // Host names that resolve (injected resolver) to non-public addresses.
  { name: 'allowed name resolving to 10.0.0.5', url: 'https://internal.allowed.test/', code: 'egress_address_denied', extra: addr('private'), dns: 1 },
  { name: 'allowed name resolving to 169.254.169.254', url: 'https://meta.allowed.test/', code: 'egress_address_denied', extra: addr('metadata'), dns: 1 },
  { name: 'allowed name resolving to ::1', url: 'https://v6loop.allowed.test/', code: 'egress_address_denied', extra: addr('loopback'), dns: 1 },
  { name: 'allowed name resolving to ::ffff:127.0.0.1', url: 'https://mapped.allowed.test/', code: 'egress_address_denied', extra: addr('loopback'), dns: 1 },
  { name: 'allowed name resolving to NAT64 of metadata', url: 'https://nat64.allowed.test/', code: 'egress_address_denied', extra: addr('nat64'), dns: 1 },
  { name: 'allowed name resolving to 6to4 of 192.168.1.1', url: 'https://sixtofour.allowed.test/', code: 'egress_address_denied', extra: addr('sixtofour'), dns: 1 },
  { name: 'allowed name resolving to ULA', url: 'https://ula.allowed.test/', code: 'egress_address_denied', extra: addr('unique_local'), dns: 1 },
  { name: 'allowed name resolving to CGNAT', url: 'https://cgnat.allowed.test/', code: 'egress_address_denied', extra: addr('cgnat'), dns: 1 },
  { name: 'allowed name resolving to benchmarking 198.18/15', url: 'https://bench.allowed.test/', code: 'egress_address_denied', extra: addr('benchmarking'), dns: 1 },
  { name: 'mixed answer public + private is refused', url: 'https://mixed.allowed.test/', code: 'egress_address_denied', extra: addr('private'), dns: 1 },
  { name: 'mixed answer with the private address last', url: 'https://mixed-last.allowed.test/', code: 'egress_address_denied', extra: addr('loopback'), dns: 1 },
  { name: 'mixed IPv6 answer public + ULA', url: 'https://mixed6.allowed.test/', code: 'egress_address_denied', extra: addr('unique_local'), dns: 1 },
  { name: 'resolver answer that is not an IP', url: 'https://garbage.allowed.test/', code: 'egress_address_denied', extra: addr('invalid'), dns: 1 },
  { name: 'resolver answer in octal form is not re-interpreted', url: 'https://octal.allowed.test/', code: 'egress_address_denied', extra: addr('invalid'), dns: 1 },
  { name: 'resolver answer with a zone id', url: 'https://zone.allowed.test/', code: 'egress_address_denied', extra: addr('invalid'), dns: 1 },
  { name: 'resolver returns no address', url: 'https://empty.allowed.test/', code: 'egress_denied', extra: { reason: 'dns_no_address' }, dns: 1 },
  { name: 'resolver fails (NXDOMAIN)', url: 'https://nx.allowed.test/', code: 'egress_denied', extra: { reason: 'dns_failed' }, dns: 1 },
  { name: 'DNS rebinding: first answer private, no second lookup', url: 'https://rebind.allowed.test/', code: 'egress_address_denied', extra: addr('private'), dns: 1 },
  // Metadata host names are refused by name, before any DNS, even when allowlisted.
  { name: 'metadata.google.internal by name', url: 'https://metadata.google.internal/computeMetadata/v1/', code: 'egress_address_denied', extra: { reason: 'metadata_host' }, dns: 0 },
  { name: 'metadata name uppercase with trailing dot', url: 'https://METADATA.GOOGLE.INTERNAL./', code: 'egress_address_denied', extra: { reason: 'metadata_host' }, dns: 0 },
  { name: 'bare "metadata" host', url: 'https://metadata/', code: 'egress_address_denied', extra: { reason: 'metadata_host' }, dns: 0 },
  { name: 'instance-data host', url: 'https://instance-data/latest/meta-data/', code: 'egress_address_denied', extra: { reason: 'metadata_host' }, dns: 0 },
  // Other schemes.
  { name: 'file: scheme', url: 'file:///etc/passwd', code: 'egress_scheme_denied', dns: 0 },
  { name: 'ftp: scheme', url: 'ftp://allowed.test/', code: 'egress_scheme_denied', dns: 0 },
  { name: 'gopher: scheme (Redis smuggling)', url: 'gopher://allowed.test:6379/_SET%20x%201', code: 'egress_scheme_denied', dns: 0 },
  { name: 'data: scheme', url: 'data:text/plain,hello', code: 'egress_scheme_denied', dns: 0 },
  { name: 'javascript: scheme', url: 'javascript:alert(1)', code: 'egress_scheme_denied', dns: 0 },
  { name: 'ws: scheme', url: 'ws://allowed.test/', code: 'egress_scheme_denied', dns: 0 },
  { name: 'wss: scheme', url: 'wss://allowed.test/', code: 'egress_scheme_denied', dns: 0 },
  { name: 'dict: scheme', url: 'dict://allowed.test:11211/stat', code: 'egress_scheme_denied', dns: 0 },
  { name: 'plain http to an allowed public host', url: 'http://allowed.test/', code: 'egress_scheme_denied', extra: { scheme: 'http' }, dns: 0 },
  { name: 'plain http to loopback without an unsafe range', url: 'http://127.0.0.1/', list: true, code: 'egress_scheme_denied', dns: 0 },
  // Userinfo confusion.
  { name: 'userinfo allowed.test@127.0.0.1', url: 'https://allowed.test@127.0.0.1/', code: 'egress_denied', extra: { reason: 'userinfo_not_allowed' }, dns: 0 },
  { name: 'userinfo user:pass@allowed.test', url: 'https://user:pass@allowed.test/', code: 'egress_denied', extra: { reason: 'userinfo_not_allowed' }, dns: 0 },
  { name: 'userinfo with port-like text allowed.test:443@evil.test', url: 'https://allowed.test:443@evil.test/', code: 'egress_denied', extra: { reason: 'userinfo_not_allowed' } },
  { name: 'empty userinfo :@ hidden by the parser', url: 'https://:@allowed.test/', code: 'egress_denied', extra: { reason: 'userinfo_not_allowed' }, dns: 0 },
  { name: 'percent-encoded userinfo %61llowed.test@evil.test', url: 'https://%61llowed.test@evil.test/', code: 'egress_denied', extra: { reason: 'userinfo_not_allowed' } },
  // Fragments and backslashes.
  { name: 'fragment hiding the real host evil.test#@allowed.test', url: 'https://evil.test#@allowed.test/', code: 'egress_domain_denied', extra: { host: 'evil.test' }, dns: 0 },
  { name: 'fragment with allowed name after it', url: 'https://evil.test/#.allowed.test', code: 'egress_domain_denied', dns: 0 },
  { name: 'backslash allowed.test\\@evil.test', url: 'https://allowed.test\\@evil.test/', code: 'egress_denied', extra: { reason: 'url_malformed' }, dns: 0 },
  { name: 'backslash evil.test\\\\allowed.test', url: 'https://evil.test\\\\allowed.test/', code: 'egress_denied', extra: { reason: 'url_malformed' } },
  { name: 'backslashes instead of slashes', url: 'https:\\\\allowed.test\\', code: 'egress_denied', extra: { reason: 'url_malformed' } },
  { name: 'mixed slash/backslash after scheme', url: 'https:/\\127.0.0.1/', code: 'egress_denied', extra: { reason: 'url_malformed' } },
  { name: 'scheme without // (https:allowed.test)', url: 'https:allowed.test/', code: 'egress_denied', extra: { reason: 'url_malformed' } },
  { name: 'leading space', url: ' https://allowed.test/', code: 'egress_denied', extra: { reason: 'url_malformed' } },
  { name: 'tab inside the host (stripped by WHATWG)', url: 'https://127.0.0.\t1/', code: 'egress_denied', extra: { reason: 'url_malformed' } },
  { name: 'newline at the end', url: 'https://allowed.test/\n', code: 'egress_denied', extra: { reason: 'url_malformed' } },
  { name: 'not a URL at all', url: 'allowed.test/path', code: 'egress_denied', extra: { reason: 'url_invalid' } },
  // Ports.
  { name: 'port 8443 not in the profile', url: 'https://allowed.test:8443/', code: 'egress_port_denied', extra: { port: 8443 }, dns: 0 },
  { name: 'port 22 (ssh)', url: 'https://allowed.test:22/', code: 'egress_port_denied', dns: 0 },
  { name: 'port 0', url: 'https://allowed.test:0/', code: 'egress_port_denied', dns: 0 },
  { name: 'port 65536 out of range', url: 'https://allowed.test:65536/', code: 'egress_denied', extra: { reason: 'url_invalid' } },
  { name: 'port 80 over https', url: 'https://allowed.test:80/', code: 'egress_port_denied', dns: 0 },
  // Domains.
  { name: 'domain not in the allowlist', url: 'https://evil.test/', code: 'egress_domain_denied', dns: 0 },
  { name: 'allowed name as a left label (allowed.test.evil.test)', url: 'https://allowed.test.evil.test/', code: 'egress_domain_denied', dns: 0 },
  { name: 'allowed name as a string suffix (evilallowed.test)', url: 'https://evilallowed.test/', code: 'egress_domain_denied', dns: 0 },
  { name: 'percent-encoded dot allowed.test%2eevil.test', url: 'https://allowed.test%2eevil.test/', code: 'egress_domain_denied', dns: 0 },
  { name: 'IDN homograph (Cyrillic a) of allowed.test', url: 'https://\u0430llowed.test/', code: 'egress_domain_denied', extra: { host: 'xn--llowed-2nf.test' }, dns: 0 },
  { name: 'punycode homograph xn--llowed-2nf.test', url: 'https://xn--llowed-2nf.test/', code: 'egress_domain_denied', dns: 0 },
  { name: 'public IP literal not listed', url: 'https://8.8.8.8/', code: 'egress_domain_denied', dns: 0 },
  { name: 'public IPv6 literal not listed', url: 'https://[2606:4700::1111]/', code: 'egress_domain_denied', dns: 0 },
  { name: '*.wild.test does not cover the apex', url: 'https://wild.test/', code: 'egress_domain_denied', dns: 0 },
  { name: 'double trailing dot', url: 'https://allowed.test../', code: 'egress_denied', extra: { reason: 'url_invalid' } },
  // Methods and headers.
  { name: 'TRACE (cross-site tracing)', url: 'https://allowed.test/', method: 'TRACE', code: 'egress_denied', extra: { reason: 'method_not_allowed' }, dns: 0 },
  { name: 'CONNECT tunnel', url: 'https://allowed.test/', method: 'CONNECT', code: 'egress_denied', extra: { reason: 'method_not_allowed' }, dns: 0 },
  { name: 'DELETE not in the profile', url: 'https://allowed.test/', method: 'DELETE', code: 'egress_denied', extra: { reason: 'method_not_allowed' }, dns: 0 },
  { name: 'method with a space (request-line injection)', url: 'https://allowed.test/', method: 'GET /x HTTP/1.1\r\nHost: evil', code: 'egress_denied', extra: { reason: 'method_invalid' } },
  {
    name: 'header value with CRLF (header injection)',
    url: 'https://allowed.test/',
    headers: { 'X-Note': 'a\r\nHost: 127.0.0.1' },
    code: 'egress_denied',
    extra: { reason: 'header_invalid' },
    dns: 0,
  },
  { name: 'header name with a colon', url: 'https://allowed.test/', headers: { 'Host:': 'x' }, code: 'egress_denied', extra: { reason: 'header_invalid' }, dns: 0 },
];

test('the SSRF table has at least 60 cases', () => {
  assert.ok(cases.length >= 60, `only ${cases.length} cases`);
});

const strict = new EgressGuard({ resolver });
for (const c of cases) {
  test(`SSRF refused: ${c.name}`, async () => {
    const before = new Map(resolver.calls);
    await assert.rejects(
      strict.fetch({ method: c.method ?? 'GET', url: c.url, headers: c.headers }, { profile: profileFor(c), limits: LIMITS }),
      isGate(c.code, c.extra),
    );
    if (c.dns !== undefined) {
      const host = (() => {
        try {
          return new URL(c.url).hostname;
        } catch {
          return '';
        }
      })();
      const calls = (resolver.calls.get(host) ?? 0) - (before.get(host) ?? 0);
      assert.equal(calls, c.dns, `resolver calls for ${host}`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Redirects: a loopback upstream (reachable only through the unsafe range 127.0.0.0/8) answers with
// hostile Location headers; each hop is re-vetted from scratch and refused.

interface RedirectCase {
  name: string;
  /** Location header; `{port}` is replaced by the upstream's port. */
  location: string;
  status?: number;
  reason: string;
  denied?: GateErrorCode;
}

const redirectCases: RedirectCase[] = [
  { name: 'redirect to loopback IP literal (not allowlisted)', location: 'http://127.0.0.1:{port}/ok', reason: 'domain_not_allowed', denied: 'egress_domain_denied' },
  { name: 'redirect to 0x7f.1 (normalized loopback literal)', location: 'http://0x7f.1:{port}/ok', reason: 'domain_not_allowed' },
  { name: 'redirect to v4-mapped loopback literal', location: 'http://[::ffff:127.0.0.1]:{port}/ok', reason: 'domain_not_allowed' },
  { name: 'redirect to the metadata IP (allowlisted)', location: 'https://169.254.169.254/latest/meta-data/', reason: 'address_not_public', denied: 'egress_address_denied' },
  { name: 'redirect to the metadata IP in decimal', location: 'https://2852039166/latest/meta-data/', reason: 'address_not_public' },
  { name: 'redirect to an allowed name resolving to 10.0.0.5', location: 'http://internal.allowed.test:{port}/', reason: 'address_not_public' },
  { name: 'redirect to an allowed name with a mixed answer', location: 'http://mixed.allowed.test:{port}/', reason: 'mixed_answer' },
  { name: 'redirect to metadata.google.internal (allowlisted)', location: 'http://metadata.google.internal/computeMetadata/v1/', reason: 'metadata_host' },
  { name: 'redirect to another domain', location: 'http://evil.test:{port}/ok', reason: 'domain_not_allowed' },
  { name: 'redirect to another domain with 307', location: 'http://evil.test:{port}/ok', status: 307, reason: 'domain_not_allowed' },
  { name: 'redirect to another domain with 308', location: 'http://evil.test:{port}/ok', status: 308, reason: 'domain_not_allowed' },
  { name: 'redirect to file:', location: 'file:///etc/passwd', reason: 'scheme_not_allowed', denied: 'egress_scheme_denied' },
  { name: 'redirect to gopher:', location: 'gopher://a.allowed.test:6379/_INFO', reason: 'scheme_not_allowed' },
  { name: 'redirect to plain http on a public host', location: 'http://public.allowed.test/', reason: 'scheme_not_allowed' },
  { name: 'redirect with userinfo', location: 'http://a.allowed.test@evil.test:{port}/', reason: 'userinfo_not_allowed' },
  { name: 'redirect with a backslash', location: 'http://a.allowed.test:{port}\\@evil.test/', reason: 'url_malformed' },
  { name: 'redirect to a protocol-relative other host', location: '//evil.test:{port}/ok', reason: 'domain_not_allowed' },
  { name: 'redirect to a public port not in the profile', location: 'https://public.allowed.test:8443/', reason: 'port_not_allowed', denied: 'egress_port_denied' },
];

test('redirects: every hostile hop is refused (one upstream hit, no follow-up)', async (t) => {
  const upstream = await startUpstream(t, (req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/redirect') {
      res.writeHead(Number(u.searchParams.get('status') ?? 302), { location: u.searchParams.get('to') ?? '' });
      res.end();
      return;
    }
    res.end('reached');
  });
  const res = tableResolver({
    'a.allowed.test': ['127.0.0.1'],
    'evil.test': ['127.0.0.1'],
    'internal.allowed.test': ['10.0.0.5'],
    'mixed.allowed.test': ['127.0.0.1', '93.184.216.34'],
    'public.allowed.test': ['93.184.216.34'],
  });
  const guard = new EgressGuard({ resolver: res, unsafeAllow: ['127.0.0.0/8'] });
  const profile: EgressProfile = {
    allowed_domains: ['.allowed.test', '169.254.169.254', 'metadata.google.internal'],
    allowed_methods: ['GET', 'POST'],
  };
  for (const c of redirectCases) {
    await t.test(`redirect refused: ${c.name}`, async () => {
      const before = upstream.hits.length;
      const to = c.location.replaceAll('{port}', String(upstream.port));
      const url = `http://a.allowed.test:${upstream.port}/redirect?status=${c.status ?? 302}&to=${encodeURIComponent(to)}`;
      await assert.rejects(
        guard.fetch({ method: 'GET', url }, { profile, limits: LIMITS }),
        isGate('egress_redirect_denied', { reason: c.reason, hop: 1, ...(c.denied ? { denied: c.denied } : {}) }),
      );
      assert.equal(upstream.hits.length - before, 1, 'only the first hop reached the upstream');
    });
  }
});

test('redirects: a fourth hop is refused (at most 3 followed)', async (t) => {
  const upstream = await startUpstream(t, (req, res) => {
    const n = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('n'));
    if (n > 0) {
      res.writeHead(302, { location: `/chain?n=${n - 1}` });
      res.end();
    } else res.end('end');
  });
  const res = tableResolver({ 'a.allowed.test': ['127.0.0.1'] });
  const guard = new EgressGuard({ resolver: res, unsafeAllow: ['127.0.0.0/8'] });
  const profile: EgressProfile = { allowed_domains: ['a.allowed.test'], allowed_methods: ['GET'] };
  await assert.rejects(
    guard.fetch({ method: 'GET', url: `http://a.allowed.test:${upstream.port}/chain?n=4` }, { profile, limits: LIMITS }),
    isGate('egress_redirect_denied', { reason: 'too_many_redirects', hop: 4 }),
  );
  assert.equal(upstream.hits.length, 4, 'the original request and three followed hops');
  const ok = await guard.fetch({ method: 'GET', url: `http://a.allowed.test:${upstream.port}/chain?n=3` }, { profile, limits: LIMITS });
  assert.equal(ok.status, 200);
  assert.equal(ok.body, 'end');
  // Each hop is re-vetted from scratch: one resolution per hop (4 + 4).
  assert.equal(res.calls.get('a.allowed.test'), 8);
});

test('DNS rebinding: the socket goes to the vetted address; the resolver is asked exactly once', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => res.end('pinned'));
  // First answer: the loopback upstream (inside the unsafe range). Any second lookup would say 10.0.0.1.
  const res = tableResolver({ 'rebind.allowed.test': (n) => (n === 1 ? ['127.0.0.1'] : ['10.0.0.1']) });
  const guard = new EgressGuard({ resolver: res, unsafeAllow: ['127.0.0.0/8'] });
  const out = await guard.fetch(
    { method: 'GET', url: `http://rebind.allowed.test:${upstream.port}/` },
    { profile: { allowed_domains: ['rebind.allowed.test'], allowed_methods: ['GET'] }, limits: LIMITS },
  );
  assert.equal(out.body, 'pinned');
  assert.equal(res.calls.get('rebind.allowed.test'), 1);
  assert.equal(upstream.hits.length, 1);
  assert.equal(upstream.hits[0]?.headers.host, `rebind.allowed.test:${upstream.port}`, 'Host keeps the name, the socket uses the vetted address');
});

test('unknown domain: precheck marks it unresolved; fetch refuses it unless approved (extraDomains)', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => res.end('ok'));
  const res = tableResolver({ 'new.example.test': ['127.0.0.1'] });
  const guard = new EgressGuard({ resolver: res, unsafeAllow: ['127.0.0.0/8'] });
  const profile: EgressProfile = { allowed_domains: ['api.allowed.test'], allowed_methods: ['GET'] };
  const url = `http://new.example.test:${upstream.port}/`;
  const pre = guard.precheck(url, 'GET', profile, []);
  assert.equal(pre.resolved, false);
  assert.equal(pre.matched, null);
  assert.equal(res.total(), 0, 'precheck does no DNS');
  await assert.rejects(guard.fetch({ method: 'GET', url }, { profile, limits: LIMITS }), isGate('egress_domain_denied', { reason: 'domain_not_allowed' }));
  assert.equal(res.total(), 0, 'a refused domain is never resolved');
  assert.equal(upstream.hits.length, 0);
  const approved = await guard.fetch({ method: 'GET', url }, { profile, extraDomains: ['new.example.test'], limits: LIMITS });
  assert.equal(approved.body, 'ok');
});
