// RLIMIT_* names of the OCI spec → Linux resource numbers (asm-generic/resource.h, same on x86-64 and arm64).

export const RLIMITS: Readonly<Record<string, number>> = {
  RLIMIT_CPU: 0,
  RLIMIT_FSIZE: 1,
  RLIMIT_DATA: 2,
  RLIMIT_STACK: 3,
  RLIMIT_CORE: 4,
  RLIMIT_RSS: 5,
  RLIMIT_NPROC: 6,
  RLIMIT_NOFILE: 7,
  RLIMIT_MEMLOCK: 8,
  RLIMIT_AS: 9,
  RLIMIT_LOCKS: 10,
  RLIMIT_SIGPENDING: 11,
  RLIMIT_MSGQUEUE: 12,
  RLIMIT_NICE: 13,
  RLIMIT_RTPRIO: 14,
  RLIMIT_RTTIME: 15,
};

/**
 * A limit value as the plan writes it: decimal, or "-1" for RLIM_INFINITY. JSON numbers lose precision above 2^53,
 * so 2^64-1 (the usual spelling of "unlimited") arrives as 18446744073709552000; anything ≥ 2^63 means infinity.
 */
export function rlimitValue(v: number): string {
  if (v >= 2 ** 63) return '-1';
  return BigInt(v).toString();
}
