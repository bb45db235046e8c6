/**
 * Linux errno numbers (asm-generic/errno-base.h and errno.h; the same on x86_64
 * and arm64) with glibc's strerror text. Callers match on the number, never on
 * the text; the text is for humans reading a one-line error.
 */
export const EPERM = 1;
export const ENOENT = 2;
export const ESRCH = 3;
export const EINTR = 4;
export const EIO = 5;
export const ENXIO = 6;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const EXDEV = 18;
export const ENODEV = 19;
export const ENOTDIR = 20;
export const EINVAL = 22;
export const EMFILE = 24;
export const ENOSPC = 28;
export const ERANGE = 34;
export const ENAMETOOLONG = 36;
export const ENOSYS = 38;
export const ENOTEMPTY = 39;
export const ELOOP = 40;
export const EPROTO = 71;
export const ENOTSOCK = 88;
export const EMSGSIZE = 90;
export const EPROTONOSUPPORT = 93;
export const EOPNOTSUPP = 95;
export const EPFNOSUPPORT = 96;
export const EAFNOSUPPORT = 97;
export const EADDRINUSE = 98;
export const EADDRNOTAVAIL = 99;
export const ENETDOWN = 100;
export const ENETUNREACH = 101;
export const ENOBUFS = 105;
export const ENOTCONN = 107;
export const ETIMEDOUT = 110;
export const EALREADY = 114;
/** Kernel-internal "not supported" (include/linux/errno.h); some drivers leak it to user space. */
export const ENOTSUPP = 524;

const TABLE: ReadonlyMap<number, readonly [name: string, text: string]> = new Map([
  [EPERM, ['EPERM', 'Operation not permitted']],
  [ENOENT, ['ENOENT', 'No such file or directory']],
  [ESRCH, ['ESRCH', 'No such process']],
  [EINTR, ['EINTR', 'Interrupted system call']],
  [EIO, ['EIO', 'Input/output error']],
  [ENXIO, ['ENXIO', 'No such device or address']],
  [EBADF, ['EBADF', 'Bad file descriptor']],
  [EAGAIN, ['EAGAIN', 'Resource temporarily unavailable']],
  [ENOMEM, ['ENOMEM', 'Cannot allocate memory']],
  [EACCES, ['EACCES', 'Permission denied']],
  [EFAULT, ['EFAULT', 'Bad address']],
  [EBUSY, ['EBUSY', 'Device or resource busy']],
  [EEXIST, ['EEXIST', 'File exists']],
  [EXDEV, ['EXDEV', 'Invalid cross-device link']],
  [ENODEV, ['ENODEV', 'No such device']],
  [ENOTDIR, ['ENOTDIR', 'Not a directory']],
  [EINVAL, ['EINVAL', 'Invalid argument']],
  [EMFILE, ['EMFILE', 'Too many open files']],
  [ENOSPC, ['ENOSPC', 'No space left on device']],
  [ERANGE, ['ERANGE', 'Numerical result out of range']],
  [ENAMETOOLONG, ['ENAMETOOLONG', 'File name too long']],
  [ENOSYS, ['ENOSYS', 'Function not implemented']],
  [ENOTEMPTY, ['ENOTEMPTY', 'Directory not empty']],
  [ELOOP, ['ELOOP', 'Too many levels of symbolic links']],
  [EPROTO, ['EPROTO', 'Protocol error']],
  [ENOTSOCK, ['ENOTSOCK', 'Socket operation on non-socket']],
  [EMSGSIZE, ['EMSGSIZE', 'Message too long']],
  [EPROTONOSUPPORT, ['EPROTONOSUPPORT', 'Protocol not supported']],
  [EOPNOTSUPP, ['EOPNOTSUPP', 'Operation not supported']],
  [EPFNOSUPPORT, ['EPFNOSUPPORT', 'Protocol family not supported']],
  [EAFNOSUPPORT, ['EAFNOSUPPORT', 'Address family not supported by protocol']],
  [EADDRINUSE, ['EADDRINUSE', 'Address already in use']],
  [EADDRNOTAVAIL, ['EADDRNOTAVAIL', 'Cannot assign requested address']],
  [ENETDOWN, ['ENETDOWN', 'Network is down']],
  [ENETUNREACH, ['ENETUNREACH', 'Network is unreachable']],
  [ENOBUFS, ['ENOBUFS', 'No buffer space available']],
  [ENOTCONN, ['ENOTCONN', 'Transport endpoint is not connected']],
  [ETIMEDOUT, ['ETIMEDOUT', 'Connection timed out']],
  [EALREADY, ['EALREADY', 'Operation already in progress']],
  [ENOTSUPP, ['ENOTSUPP', 'Operation is not supported (kernel-internal code)']],
]);

/** 'EEXIST' for 17 (sign ignored: the kernel sends -17); 'errno 1234' for unknown numbers. */
export function errnoName(errno: number): string {
  const n = Math.abs(errno);
  return TABLE.get(n)?.[0] ?? `errno ${n}`;
}

/** 'EEXIST (File exists)'. */
export function describeErrno(errno: number): string {
  const n = Math.abs(errno);
  const entry = TABLE.get(n);
  return entry === undefined ? `errno ${n}` : `${entry[0]} (${entry[1]})`;
}
