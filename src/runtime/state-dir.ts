// Embedded mode's state directory: created 0700 on first run with a config file and an operator
// credential (operator.json, 0600: name, API key, private DPoP JWK). A second run reuses both.
import { existsSync, mkdirSync, statSync, chmodSync, writeFileSync, readFileSync, renameSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, generateKeyPairSync } from 'node:crypto';
import { asP256PublicJwk, thumbprint } from '../auth/jws.ts';
import { hashApiKey } from '../auth/middleware.ts';

export interface OperatorCredential {
  name: string;
  api_key: string;
  dpop_jwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string; d: string };
}

/** Writes a file atomically with `mode` (temp file, fsync, rename). */
export function writeFileAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  const fd = openSync(tmp, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
  renameSync(tmp, path);
}

export function newOperatorCredential(name: string): OperatorCredential {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' }) as OperatorCredential['dpop_jwk'];
  return { name, api_key: `pck_${randomBytes(32).toString('base64url')}`, dpop_jwk: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, d: jwk.d } };
}

export function operatorConfigEntry(cred: OperatorCredential): { name: string; api_key_sha256: string; dpop_jkt: string } {
  return { name: cred.name, api_key_sha256: hashApiKey(cred.api_key), dpop_jkt: thumbprint(asP256PublicJwk({ kty: 'EC', crv: 'P-256', x: cred.dpop_jwk.x, y: cred.dpop_jwk.y })) };
}

export interface StateDirLayout {
  dir: string;
  configPath: string;
  credentialPath: string;
  created: boolean;
}

function tomlString(s: string): string {
  return JSON.stringify(s);
}

/** Creates (or checks) the embedded state directory. Refuses a directory others can read. */
export function ensureStateDir(dir: string, operatorName = 'operator'): StateDirLayout {
  let created = false;
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    created = true;
  }
  const st = statSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if ((st.mode & 0o077) !== 0) throw new Error(`${dir} is accessible by group/others (mode ${(st.mode & 0o777).toString(8)}); it must be 0700`);
  const configPath = join(dir, 'portcullis.toml');
  const credentialPath = join(dir, 'operator.json');
  if (!existsSync(credentialPath)) {
    const cred = newOperatorCredential(operatorName);
    writeFileAtomic(credentialPath, `${JSON.stringify(cred, null, 2)}\n`, 0o600);
  }
  if (!existsSync(configPath)) {
    const cred = JSON.parse(readFileSync(credentialPath, 'utf8')) as OperatorCredential;
    const op = operatorConfigEntry(cred);
    const toml = [
      '# Portcullis embedded-mode configuration (generated on first run; edit freely).',
      'mode = "embedded"',
      'state_dir = "."',
      'public_base_url = "http://localhost"',
      'lease_ttl_seconds = 300',
      '',
      '[identity]',
      'provider = "none"',
      'principal = "agent"',
      '',
      '[[operators]]',
      `name = ${tomlString(op.name)}`,
      `api_key_sha256 = ${tomlString(op.api_key_sha256)}`,
      `dpop_jkt = ${tomlString(op.dpop_jkt)}`,
      '',
    ].join('\n');
    writeFileAtomic(configPath, toml, 0o600);
  }
  return { dir, configPath, credentialPath, created };
}
