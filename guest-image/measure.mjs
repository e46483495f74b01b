#!/usr/bin/env node
// Boot-time and memory measurement of a built guest image (a tool for choosing the format; not used by hull).
//
//   node guest-image/measure.mjs [guestDir] [runs]      guestDir defaults to build/guest/current, runs to 3
//
// Each run boots the image under QEMU microvm with `hull.measure=1` (init runs `node -e` that prints one line,
// then powers off) and records the wall time from spawning QEMU to that line and to QEMU's exit. One extra run
// with `hull.measure=hold` keeps Node running and reads QEMU's Pss from /proc/<pid>/smaps_rollup.
// Env: HULL_MEASURE_ACCEL (tcg), HULL_MEASURE_MEM (512), HULL_MEASURE_EXTRA_CMDLINE, HULL_MEASURE_QEMU_EXTRA
// (extra QEMU arguments, space-separated).
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

const dir = resolve(process.argv[2] ?? new URL("../build/guest/current", import.meta.url).pathname);
const runs = Number(process.argv[3] ?? 3);
const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
const accel = process.env.HULL_MEASURE_ACCEL ?? "tcg";
const mem = process.env.HULL_MEASURE_MEM ?? "512";

// Under TCG the guest TSC runs at the host's TSC rate, and the kernel's fast PIT calibration of it fails now and
// then on a busy host ("tsc: Marking TSC unstable due to could not calculate TSC khz"), after which the boot hangs.
// Telling the kernel the rate skips the calibration.
const hostMHz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? 0);
const tscOpt = accel === "tcg" && hostMHz > 0 ? `tsc_early_khz=${Math.round(hostMHz * 1000)}` : "";

function qemuArgs(measure) {
  const cmdline = [manifest.kernelCmdline, tscOpt, `hull.measure=${measure}`, process.env.HULL_MEASURE_EXTRA_CMDLINE ?? ""]
    .join(" ").trim();
  const args = [
    "-M", "microvm", "-accel", accel, "-m", mem, "-smp", "1",
    "-kernel", join(dir, "vmlinux"), "-initrd", join(dir, "initrd.img"), "-append", cmdline,
    "-nographic", "-no-reboot",
  ];
  if (manifest.format === "erofs") {
    args.push("-drive", `file=${join(dir, "rootfs.erofs")},if=none,id=root,format=raw,readonly=on`,
      "-device", "virtio-blk-device,drive=root");
  }
  if (process.env.HULL_MEASURE_QEMU_EXTRA) args.push(...process.env.HULL_MEASURE_QEMU_EXTRA.split(" ").filter(Boolean));
  return args;
}

function boot(measure) {
  return new Promise((done, fail) => {
    const t0 = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
    const q = spawn("qemu-system-x86_64", qemuArgs(measure), { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const r = { printed: null, exited: null, guestInit: null, guestNode: null, pssKiB: null, rssKiB: null };
    const timer = setTimeout(() => { q.kill("SIGKILL"); fail(new Error(`timeout; console:\n${out}`)); }, 120_000);
    q.stdout.on("data", (b) => {
      out += b;
      if (r.printed === null) {
        const m = /hull-measure: node printed at ([\d.]+)s/.exec(out);
        if (m) {
          r.printed = ms();
          r.guestNode = Number(m[1]);
          const i = /hull-init: measure: starting node at ([\d.]+)s/.exec(out);
          if (i) r.guestInit = Number(i[1]);
          if (measure === "hold") {
            setTimeout(() => {
              const s = readFileSync(`/proc/${q.pid}/smaps_rollup`, "utf8");
              r.pssKiB = Number(/^Pss:\s+(\d+)/m.exec(s)[1]);
              r.rssKiB = Number(/^Rss:\s+(\d+)/m.exec(s)[1]);
              // Biggest mappings, to tell guest RAM from QEMU's own (TCG code buffer, mapped kernel/initrd).
              const maps = readFileSync(`/proc/${q.pid}/smaps`, "utf8").split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/);
              r.top = maps.map((m) => [Number(/^Pss:\s+(\d+)/m.exec(m)?.[1] ?? 0), m.split("\n")[0].replace(/\s+/g, " ")])
                .sort((a, b) => b[0] - a[0]).slice(0, 5);
              q.kill("SIGTERM");
            }, 2000);
          }
        }
      }
    });
    q.stderr.on("data", (b) => { out += b; });
    q.on("exit", () => {
      clearTimeout(timer);
      r.exited = ms();
      if (r.printed === null) fail(new Error(`node never printed; console:\n${out}`));
      else done(r);
    });
  });
}

const rows = [];
for (let i = 0; i < runs; i++) rows.push(await boot("1"));
const hold = await boot("hold");
const f = (n) => (n / 1000).toFixed(2);
console.log(`image ${manifest.hash} format=${manifest.format} accel=${accel} mem=${mem}M`);
for (const r of rows) {
  console.log(`  node printed ${f(r.printed)} s wall (guest: init→node ${r.guestInit}s, node printed ${r.guestNode}s), qemu exit ${f(r.exited)} s`);
}
const avg = (k) => rows.reduce((a, r) => a + r[k], 0) / rows.length;
console.log(`  mean: node printed ${f(avg("printed"))} s, qemu exit ${f(avg("exited"))} s`);
console.log(`  hold: QEMU Pss ${(hold.pssKiB / 1024).toFixed(0)} MiB, Rss ${(hold.rssKiB / 1024).toFixed(0)} MiB (2 s after node printed)`);
for (const [pss, name] of hold.top) console.log(`    ${(pss / 1024).toFixed(0).padStart(4)} MiB  ${name}`);
