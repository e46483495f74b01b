// Finds the guest image built by guest-image/build.sh: <repo>/build/guest/current unless HULL_GUEST_DIR (or, below
// it, paths.guest_dir of the config file) says otherwise. The manifest says which format won the boot-time
// measurement and what the kernel needs on its command line.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { hullConfig } from '../config/load.js';
import { HullError } from '../errors.js';
import { repoRoot } from '../../hypervisor/paths.js';

export interface GuestAssets {
  dir: string;
  kernelPath: string;
  initrdPath: string;
  rootImagePath?: string;
  kernelCmdline: string;
  kernelRelease: string;
  /** The image's manifest hash: which build this is (a pooled VM is handed only to a sandbox of the same image). */
  hash: string;
}

interface Manifest {
  hash: string;
  kernelRelease: string;
  format: 'initramfs' | 'erofs';
  kernelCmdline: string;
}

/** Where the guest image is looked for: $HULL_GUEST_DIR, else paths.guest_dir, else the build's own output. */
export function guestAssetsDir(): string {
  return process.env.HULL_GUEST_DIR ?? hullConfig().values.paths.guest_dir ?? path.join(repoRoot(), 'build', 'guest', 'current');
}

export function findGuestAssets(dir = guestAssetsDir()): GuestAssets {
  const manifestPath = path.join(dir, 'manifest.json');
  if (!existsSync(manifestPath)) {
    throw new HullError(
      'failed-precondition',
      `guest image not found at ${dir}: build it with "npm run build" (or set HULL_GUEST_DIR or paths.guest_dir)`,
    );
  }
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
  const rootImage = path.join(dir, 'rootfs.erofs');
  return {
    dir,
    kernelPath: path.join(dir, 'vmlinux'),
    initrdPath: path.join(dir, 'initrd.img'),
    rootImagePath: manifest.format === 'erofs' ? rootImage : undefined,
    kernelCmdline: manifest.kernelCmdline,
    kernelRelease: manifest.kernelRelease,
    hash: manifest.hash,
  };
}
