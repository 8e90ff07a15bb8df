// Finds the connection socket behind a request and reads its peer credentials. The fd is read
// from the live handle and passed to getsockopt in the same synchronous step, so it cannot have
// been closed and reused by another connection in between.
import { Socket } from 'node:net';
import type { Context } from 'hono';
import type { GateEnv } from '../http/env.ts';
import { peercred, type PeerCredentials } from './native.ts';

/** What an identity provider is asked about: a hono request context or the raw connection socket. */
export type PeerSource = Context<GateEnv> | Socket;

/** Thrown when a request has no usable connection socket. `code` is stable. */
export class PeerSocketError extends Error {
  readonly code: 'ERR_PEER_NO_SOCKET' | 'ERR_PEER_SOCKET_CLOSED';

  constructor(code: PeerSocketError['code'], message: string) {
    super(message);
    this.name = 'PeerSocketError';
    this.code = code;
  }
}

/**
 * The connection socket of a request: `c.env.incoming.socket` under @hono/node-server (HTTP/1).
 * Throws {@link PeerSocketError} when there is none (e.g. `app.request()` in a test).
 */
export function peerSocket(source: PeerSource): Socket {
  if (source instanceof Socket) return source;
  const socket: unknown = (source.env as Partial<GateEnv['Bindings']> | undefined)?.incoming?.socket;
  if (!(socket instanceof Socket)) {
    throw new PeerSocketError('ERR_PEER_NO_SOCKET', 'the request has no connection socket (not served by @hono/node-server)');
  }
  return socket;
}

/**
 * The OS file descriptor of a connected socket. Node has no public API for it: it is the `fd` of
 * the socket's libuv handle (`socket._handle.fd`, a Pipe for Unix sockets), which is null once
 * the socket is destroyed. Throws {@link PeerSocketError} when there is no open fd.
 */
export function socketFd(socket: Socket): number {
  const handle: unknown = (socket as unknown as { _handle?: unknown })._handle;
  if (socket.destroyed || handle === null || typeof handle !== 'object') {
    throw new PeerSocketError('ERR_PEER_SOCKET_CLOSED', 'the connection socket is closed');
  }
  const fd: unknown = (handle as { fd?: unknown }).fd;
  if (typeof fd !== 'number' || !Number.isSafeInteger(fd) || fd < 0) {
    throw new PeerSocketError('ERR_PEER_SOCKET_CLOSED', 'the connection socket has no open file descriptor');
  }
  return fd;
}

/**
 * SO_PEERCRED of the process that connected `source` (a hono context or a socket). Throws when
 * they cannot be read for any reason: no socket, closed socket, not a connected Unix stream
 * socket, addon missing, or a failed system call. Never returns a guess.
 */
export function readPeerCredentials(source: PeerSource): PeerCredentials {
  const socket = peerSocket(source);
  return peercred(socketFd(socket));
}
