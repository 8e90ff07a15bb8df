// Loader for the identity addon (src/identity/native, built offline with node-gyp). The addon is
// loaded lazily, so a gate that never reads peer credentials needs no compiler; a missing or
// broken build fails loudly with the command that fixes it, never with a fallback.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** Credentials the kernel recorded when the peer connected (SO_PEERCRED). */
export interface PeerCredentials {
  /** Peer pid at connect time; 0 when the peer is in a pid namespace this process cannot see. */
  pid: number;
  /** Effective uid at connect time (as seen from this process's user namespace). */
  uid: number;
  gid: number;
}

/** The functions the compiled addon exports. Both throw on any failure. */
export interface IdentityAddon {
  /**
   * Peer credentials of a connected AF_UNIX stream (or seqpacket) socket. Throws a `TypeError` /
   * `RangeError` for a bad `fd`, an error with the errno name as `code` (e.g. `EBADF`, `ENOTSOCK`)
   * when a system call fails, and `ERR_PEERCRED_NOT_UNIX`, `ERR_PEERCRED_NOT_STREAM`,
   * `ERR_PEERCRED_LISTENING` or `ERR_PEERCRED_NO_PEER` when the fd has no peer credentials.
   */
  peercred(fd: number): PeerCredentials;
  /**
   * Sends `state` (e.g. `READY=1`) as one datagram to `$NOTIFY_SOCKET` (a path or an `@abstract`
   * name). Returns false when NOTIFY_SOCKET is unset or empty; throws on any other failure
   * (`ERR_SD_NOTIFY_ADDRESS`, `ERR_SD_NOTIFY_SHORT_WRITE`, or the errno name of `sendto`).
   */
  sdNotify(state: string): boolean;
}

/** Absolute path of the compiled addon. */
export const IDENTITY_ADDON_PATH = fileURLToPath(
  new URL('./native/build/Release/portcullis_identity.node', import.meta.url),
);

/** The command that builds the addon offline against the local Node headers (~1 s). */
export const IDENTITY_ADDON_BUILD_COMMAND =
  'npm run build:native  (or: npm_config_nodedir=/usr npx node-gyp rebuild --directory src/identity/native)';

/** Thrown when the addon is missing or cannot be loaded. `code` is stable. */
export class IdentityAddonError extends Error {
  readonly code: 'ERR_IDENTITY_ADDON_NOT_BUILT' | 'ERR_IDENTITY_ADDON_LOAD_FAILED';

  constructor(code: IdentityAddonError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IdentityAddonError';
    this.code = code;
  }
}

const require = createRequire(import.meta.url);
let addon: IdentityAddon | undefined;

/** Loads (once) and returns the addon; throws {@link IdentityAddonError} when it is unusable. */
export function loadIdentityAddon(): IdentityAddon {
  if (addon) return addon;
  if (!existsSync(IDENTITY_ADDON_PATH)) {
    throw new IdentityAddonError(
      'ERR_IDENTITY_ADDON_NOT_BUILT',
      `the identity addon is not built (${IDENTITY_ADDON_PATH} is missing); build it with: ${IDENTITY_ADDON_BUILD_COMMAND}`,
    );
  }
  let loaded: unknown;
  try {
    loaded = require(IDENTITY_ADDON_PATH);
  } catch (err) {
    throw new IdentityAddonError(
      'ERR_IDENTITY_ADDON_LOAD_FAILED',
      `the identity addon at ${IDENTITY_ADDON_PATH} failed to load; rebuild it with: ${IDENTITY_ADDON_BUILD_COMMAND}`,
      { cause: err },
    );
  }
  const candidate = loaded as Partial<IdentityAddon> | null;
  if (typeof candidate?.peercred !== 'function' || typeof candidate.sdNotify !== 'function') {
    throw new IdentityAddonError(
      'ERR_IDENTITY_ADDON_LOAD_FAILED',
      `the identity addon at ${IDENTITY_ADDON_PATH} does not export peercred and sdNotify; rebuild it with: ${IDENTITY_ADDON_BUILD_COMMAND}`,
    );
  }
  addon = candidate as IdentityAddon;
  return addon;
}

/** SO_PEERCRED of a connected Unix socket fd. Throws on any failure (see {@link IdentityAddon.peercred}). */
export function peercred(fd: number): PeerCredentials {
  return loadIdentityAddon().peercred(fd);
}

/**
 * systemd readiness/status notification (`READY=1`, `STATUS=…`, `STOPPING=1`, `WATCHDOG=1`).
 * Returns false, without loading the addon, when NOTIFY_SOCKET is unset or empty (not run by
 * systemd, or a non-notify unit); throws on any failure to deliver.
 */
export function sdNotify(state: string): boolean {
  if (typeof state !== 'string') throw new TypeError('The "state" argument must be of type string');
  if (state === '' || state.includes('\0')) throw new RangeError('The "state" argument must be non-empty and contain no NUL');
  const target = process.env.NOTIFY_SOCKET;
  if (target === undefined || target === '') return false;
  return loadIdentityAddon().sdNotify(state);
}
