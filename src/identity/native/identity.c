// Portcullis identity addon: peer credentials of a connected Unix stream socket (SO_PEERCRED)
// and systemd readiness notification (sd_notify protocol). Every failure throws; no function
// ever returns a made-up uid. Errors carry `code` (errno name or ERR_*), and for system calls
// `errno` (negative, as in Node) and `syscall`.
#ifndef __linux__
#error "portcullis_identity needs Linux (SO_PEERCRED)"
#endif

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <node_api.h>

static const char *errno_name(int err) {
  switch (err) {
    case EACCES: return "EACCES";
    case EAGAIN: return "EAGAIN";
    case EBADF: return "EBADF";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EDESTADDRREQ: return "EDESTADDRREQ";
    case EFAULT: return "EFAULT";
    case EINTR: return "EINTR";
    case EINVAL: return "EINVAL";
    case EISCONN: return "EISCONN";
    case EMFILE: return "EMFILE";
    case EMSGSIZE: return "EMSGSIZE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENFILE: return "ENFILE";
    case ENOBUFS: return "ENOBUFS";
    case ENOENT: return "ENOENT";
    case ENOMEM: return "ENOMEM";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case ENOTCONN: return "ENOTCONN";
    case ENOTDIR: return "ENOTDIR";
    case ENOTSOCK: return "ENOTSOCK";
    case EPERM: return "EPERM";
    case EPIPE: return "EPIPE";
    case EPROTOTYPE: return "EPROTOTYPE";
    default: return "ESYSCALL";
  }
}

// Throws an Error like Node's system errors: message "<syscall> <CODE>: <strerror>".
static void throw_errno(napi_env env, const char *syscall, int err) {
  char msg[256];
  const char *code = errno_name(err);
  snprintf(msg, sizeof msg, "%s %s: %s", syscall, code, strerror(err));
  napi_value code_v, msg_v, error, errno_v, syscall_v;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_v) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &msg_v) != napi_ok ||
      napi_create_error(env, code_v, msg_v, &error) != napi_ok) {
    napi_throw_error(env, code, msg);
    return;
  }
  if (napi_create_int32(env, -err, &errno_v) == napi_ok) napi_set_named_property(env, error, "errno", errno_v);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_v) == napi_ok) {
    napi_set_named_property(env, error, "syscall", syscall_v);
  }
  napi_throw(env, error);
}

// Reads exactly one argument of the expected type; throws a TypeError otherwise.
static int one_arg(napi_env env, napi_callback_info info, napi_valuetype want, const char *what, napi_value *out) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype type;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "napi_get_cb_info failed");
    return 0;
  }
  if (argc < 1 || napi_typeof(env, argv[0], &type) != napi_ok || type != want) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", what);
    return 0;
  }
  *out = argv[0];
  return 1;
}

static int get_int_opt(napi_env env, int fd, int opt, const char *syscall, int *out) {
  socklen_t len = sizeof *out;
  if (getsockopt(fd, SOL_SOCKET, opt, out, &len) != 0) {
    throw_errno(env, syscall, errno);
    return 0;
  }
  if (len != sizeof *out) {
    napi_throw_error(env, "ERR_PEERCRED_SHORT_READ", "getsockopt returned a short value");
    return 0;
  }
  return 1;
}

// peercred(fd: number): { pid, uid, gid } of the process that connected the socket.
static napi_value peercred(napi_env env, napi_callback_info info) {
  napi_value arg;
  if (!one_arg(env, info, napi_number, "The \"fd\" argument must be of type number", &arg)) return NULL;

  double d;
  if (napi_get_value_double(env, arg, &d) != napi_ok) {
    napi_throw_error(env, NULL, "napi_get_value_double failed");
    return NULL;
  }
  // An fd is an integer in [0, INT_MAX]; NaN, fractions and out-of-range values are refused.
  if (!(d >= 0 && d <= (double)INT_MAX) || d != (double)(int)d) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "The \"fd\" argument must be an integer >= 0 and <= 2147483647");
    return NULL;
  }
  const int fd = (int)d;

  // SO_PEERCRED answers on any socket, but only a connected AF_UNIX stream/seqpacket socket has
  // credentials recorded by the kernel; elsewhere it yields uid -1 or the listener's own creds.
  int domain, type, listening;
  if (!get_int_opt(env, fd, SO_DOMAIN, "getsockopt(SO_DOMAIN)", &domain)) return NULL;
  if (domain != AF_UNIX) {
    napi_throw_error(env, "ERR_PEERCRED_NOT_UNIX", "the socket is not an AF_UNIX socket");
    return NULL;
  }
  if (!get_int_opt(env, fd, SO_TYPE, "getsockopt(SO_TYPE)", &type)) return NULL;
  if (type != SOCK_STREAM && type != SOCK_SEQPACKET) {
    napi_throw_error(env, "ERR_PEERCRED_NOT_STREAM", "the socket is not a stream or seqpacket socket");
    return NULL;
  }
  if (!get_int_opt(env, fd, SO_ACCEPTCONN, "getsockopt(SO_ACCEPTCONN)", &listening)) return NULL;
  if (listening != 0) {
    napi_throw_error(env, "ERR_PEERCRED_LISTENING", "the socket is a listening socket, not a connection");
    return NULL;
  }

  struct ucred cred;
  socklen_t len = sizeof cred;
  memset(&cred, 0, sizeof cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    throw_errno(env, "getsockopt(SO_PEERCRED)", errno);
    return NULL;
  }
  if (len != sizeof cred) {
    napi_throw_error(env, "ERR_PEERCRED_SHORT_READ", "getsockopt(SO_PEERCRED) returned a short value");
    return NULL;
  }
  // The kernel reports -1 when it recorded no credentials (socket never connected).
  if (cred.uid == (uid_t)-1 || cred.gid == (gid_t)-1 || cred.pid < 0) {
    napi_throw_error(env, "ERR_PEERCRED_NO_PEER", "the kernel recorded no peer credentials for this socket");
    return NULL;
  }

  napi_value result, pid_v, uid_v, gid_v;
  if (napi_create_object(env, &result) != napi_ok ||
      napi_create_int32(env, (int32_t)cred.pid, &pid_v) != napi_ok ||
      napi_create_uint32(env, (uint32_t)cred.uid, &uid_v) != napi_ok ||
      napi_create_uint32(env, (uint32_t)cred.gid, &gid_v) != napi_ok ||
      napi_set_named_property(env, result, "pid", pid_v) != napi_ok ||
      napi_set_named_property(env, result, "uid", uid_v) != napi_ok ||
      napi_set_named_property(env, result, "gid", gid_v) != napi_ok) {
    napi_throw_error(env, NULL, "could not build the result object");
    return NULL;
  }
  return result;
}

// sdNotify(state: string): boolean — one datagram to $NOTIFY_SOCKET ("/path" or "@abstract").
// false when NOTIFY_SOCKET is unset or empty (not started by systemd); throws on any failure.
static napi_value sd_notify(napi_env env, napi_callback_info info) {
  napi_value arg, result;
  if (!one_arg(env, info, napi_string, "The \"state\" argument must be of type string", &arg)) return NULL;

  size_t len;
  if (napi_get_value_string_utf8(env, arg, NULL, 0, &len) != napi_ok) {
    napi_throw_error(env, NULL, "napi_get_value_string_utf8 failed");
    return NULL;
  }
  if (len == 0) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "The \"state\" argument must not be empty");
    return NULL;
  }

  const char *addr = getenv("NOTIFY_SOCKET");
  if (addr == NULL || addr[0] == '\0') {
    napi_get_boolean(env, false, &result);
    return result;
  }

  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  const size_t alen = strlen(addr);
  socklen_t salen;
  if (addr[0] == '/') {
    if (alen >= sizeof sa.sun_path) {
      napi_throw_error(env, "ERR_SD_NOTIFY_ADDRESS", "NOTIFY_SOCKET path is too long");
      return NULL;
    }
    memcpy(sa.sun_path, addr, alen);
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + alen + 1);
  } else if (addr[0] == '@') {
    // Abstract namespace: a leading NUL, then the name; the length counts no trailing NUL.
    if (alen < 2 || alen > sizeof sa.sun_path) {
      napi_throw_error(env, "ERR_SD_NOTIFY_ADDRESS", "NOTIFY_SOCKET abstract name is empty or too long");
      return NULL;
    }
    memcpy(sa.sun_path + 1, addr + 1, alen - 1);
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + alen);
  } else {
    napi_throw_error(env, "ERR_SD_NOTIFY_ADDRESS",
                     "NOTIFY_SOCKET must be an absolute path or an @abstract name (vsock is not supported)");
    return NULL;
  }

  char *buf = malloc(len + 1);
  if (buf == NULL) {
    throw_errno(env, "malloc", ENOMEM);
    return NULL;
  }
  size_t copied;
  if (napi_get_value_string_utf8(env, arg, buf, len + 1, &copied) != napi_ok || copied != len) {
    free(buf);
    napi_throw_error(env, NULL, "napi_get_value_string_utf8 failed");
    return NULL;
  }
  if (memchr(buf, '\0', len) != NULL) {
    free(buf);
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "The \"state\" argument must not contain NUL");
    return NULL;
  }

  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const int err = errno;
    free(buf);
    throw_errno(env, "socket", err);
    return NULL;
  }
  ssize_t sent;
  do {
    sent = sendto(fd, buf, len, MSG_NOSIGNAL, (const struct sockaddr *)&sa, salen);
  } while (sent < 0 && errno == EINTR);
  const int err = errno;
  close(fd);
  free(buf);
  if (sent < 0) {
    throw_errno(env, "sendto", err);
    return NULL;
  }
  if ((size_t)sent != len) {
    napi_throw_error(env, "ERR_SD_NOTIFY_SHORT_WRITE", "sendto sent a partial datagram");
    return NULL;
  }
  napi_get_boolean(env, true, &result);
  return result;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor props[] = {
      {"peercred", NULL, peercred, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sdNotify", NULL, sd_notify, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
