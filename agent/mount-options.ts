// OCI mount option strings → mount(2) flags and data, as runc maps them (libcontainer/specconv parseMountOptions).
// Flags that take effect are MS_* bits; anything that is not a flag (mode=755, size=64k, newinstance, …) is fs data.

export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  SYNCHRONOUS: 0x10,
  REMOUNT: 0x20,
  MANDLOCK: 0x40,
  DIRSYNC: 0x80,
  NOSYMFOLLOW: 0x100,
  NOATIME: 0x400,
  NODIRATIME: 0x800,
  BIND: 0x1000,
  MOVE: 0x2000,
  REC: 0x4000,
  SILENT: 0x8000,
  UNBINDABLE: 0x20000,
  PRIVATE: 0x40000,
  SLAVE: 0x80000,
  SHARED: 0x100000,
  RELATIME: 0x200000,
  STRICTATIME: 0x1000000,
  LAZYTIME: 0x2000000,
} as const;

/** Options that set (clear=false) or clear (clear=true) a flag. */
const FLAG_OPTIONS: Record<string, { clear: boolean; flag: number }> = {
  async: { clear: true, flag: MS.SYNCHRONOUS },
  atime: { clear: true, flag: MS.NOATIME },
  bind: { clear: false, flag: MS.BIND },
  defaults: { clear: false, flag: 0 },
  dev: { clear: true, flag: MS.NODEV },
  diratime: { clear: true, flag: MS.NODIRATIME },
  dirsync: { clear: false, flag: MS.DIRSYNC },
  exec: { clear: true, flag: MS.NOEXEC },
  lazytime: { clear: false, flag: MS.LAZYTIME },
  mand: { clear: false, flag: MS.MANDLOCK },
  noatime: { clear: false, flag: MS.NOATIME },
  nodev: { clear: false, flag: MS.NODEV },
  nodiratime: { clear: false, flag: MS.NODIRATIME },
  noexec: { clear: false, flag: MS.NOEXEC },
  nolazytime: { clear: true, flag: MS.LAZYTIME },
  nomand: { clear: true, flag: MS.MANDLOCK },
  norelatime: { clear: true, flag: MS.RELATIME },
  nostrictatime: { clear: true, flag: MS.STRICTATIME },
  nosuid: { clear: false, flag: MS.NOSUID },
  nosymfollow: { clear: false, flag: MS.NOSYMFOLLOW },
  rbind: { clear: false, flag: MS.BIND | MS.REC },
  relatime: { clear: false, flag: MS.RELATIME },
  remount: { clear: false, flag: MS.REMOUNT },
  ro: { clear: false, flag: MS.RDONLY },
  rw: { clear: true, flag: MS.RDONLY },
  silent: { clear: false, flag: MS.SILENT },
  strictatime: { clear: false, flag: MS.STRICTATIME },
  suid: { clear: true, flag: MS.NOSUID },
  sync: { clear: false, flag: MS.SYNCHRONOUS },
};

/**
 * Propagation options: kept out of the mount flags because each is its own mount(2) call after the mount ("rshared"
 * must not make a bind recursive, and "rprivate" then "shared" are two changes, not one). Also linux.rootfsPropagation.
 */
export const PROPAGATION: Readonly<Record<string, number>> = {
  private: MS.PRIVATE,
  rprivate: MS.PRIVATE | MS.REC,
  shared: MS.SHARED,
  rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE,
  rslave: MS.SLAVE | MS.REC,
  unbindable: MS.UNBINDABLE,
  runbindable: MS.UNBINDABLE | MS.REC,
};

/** runc extensions that change how a mount is made, which the helper does not do (yet). */
const UNSUPPORTED_OPTIONS = new Set(['tmpcopyup', 'idmap', 'ridmap', 'recursive-ro', 'rro']);

export interface ParsedMountOptions {
  flags: number;
  /** Comma-joined filesystem data ("" when none). */
  data: string;
  /** Options that were recognised but are not applied. */
  ignored: string[];
  /** The propagation changes (MS_SHARED etc., MS_REC for the r- forms), in the options' order. */
  propagation: number[];
}

export function parseMountOptions(options: readonly string[]): ParsedMountOptions {
  let flags = 0;
  const data: string[] = [];
  const ignored: string[] = [];
  const propagation: number[] = [];
  for (const opt of options) {
    const f = FLAG_OPTIONS[opt];
    if (f) {
      flags = f.clear ? flags & ~f.flag : flags | f.flag;
    } else if (opt in PROPAGATION) {
      propagation.push(PROPAGATION[opt]!);
    } else if (UNSUPPORTED_OPTIONS.has(opt)) {
      ignored.push(opt);
    } else if (opt !== '') {
      data.push(opt);
    }
  }
  return { flags: flags >>> 0, data: data.join(','), ignored, propagation };
}
