// `hull`: the runc-compatible command line. Global flags come before the command, as with runc.
import { Command, Option } from 'commander';
import path from 'node:path';
import * as commands from './commands.js';
import * as pool from '../pool/commands.js';
import * as checks from '../check/commands.js';
import { metrics, type MetricsFlags } from '../metrics/commands.js';
import { HULL_VERSION as VERSION } from '../check/versions.js';
import { applyConfig } from '../config/startup.js';
import { configuredLogLevel, configuredRoot } from '../config/values.js';
import { errorKind, invalidArgument, oneLine } from '../errors.js';
import { createLogger, type LogFormat } from '../log.js';

interface GlobalFlags {
  root?: string;
  log?: string;
  logFormat: LogFormat;
  debug: boolean;
  systemdCgroup: boolean;
}

/** --root when the command line gives it; else the config file's paths.root (or /run/hull) applies. */
const rootFlag = (program: Command): string | undefined => program.opts<GlobalFlags>().root;

/** Reads the config file first (a bad one throws its one line before anything exists): flag > env > file > default. */
function globals(program: Command): commands.Globals {
  applyConfig();
  const flags = program.opts<GlobalFlags>();
  const root = path.resolve(configuredRoot(rootFlag(program)).value);
  const passThrough = ['--root', root, '--log-format', flags.logFormat];
  if (flags.log) passThrough.push('--log', path.resolve(flags.log));
  if (flags.debug) passThrough.push('--debug');
  if (flags.systemdCgroup) passThrough.push('--systemd-cgroup');
  const logger = createLogger({ file: flags.log, format: flags.logFormat, debug: flags.debug, level: configuredLogLevel().value });
  return { root, logger, passThrough, systemdCgroup: flags.systemdCgroup };
}

let exitCodeOnError = 1;

/** runc sends the pty master over --console-socket (SCM_RIGHTS); hull's pty lives in the guest, so there is no fd. */
function refuseConsoleSocket(socket: string | undefined): void {
  if (socket !== undefined) {
    throw invalidArgument('--console-socket is not supported: the pty lives inside the VM, so there is no host fd to send');
  }
}

function action<A extends unknown[]>(program: Command, body: (g: commands.Globals, ...args: A) => Promise<number> | number) {
  return async (...args: A): Promise<void> => {
    let g: commands.Globals;
    try {
      g = globals(program);
    } catch (err) {
      process.stderr.write(`hull: ${oneLine(err)}\n`); // a bad config file: no logger yet, nothing made yet
      process.exit(exitCodeOnError);
    }
    try {
      const code = await body(g, ...args);
      g.logger.flush();
      process.exit(code);
    } catch (err) {
      const message = oneLine(err);
      g.logger.error({ kind: errorKind(err) ?? 'internal' }, message);
      g.logger.flush();
      process.stderr.write(`hull: ${message}\n`);
      process.exit(exitCodeOnError);
    }
  };
}

export function buildProgram(): Command {
  const program = new Command('hull')
    .description('run OCI containers, each in its own microVM')
    .version(VERSION, '-v, --version')
    .enablePositionalOptions()
    .option('--root <dir>', 'directory for container state (default: paths.root of the config file, else /run/hull)')
    .option('--log <file>', 'log file (default: none)')
    .addOption(new Option('--log-format <format>', 'log format').choices(['text', 'json']).default('text'))
    .option('--debug', 'debug logging', false)
    .option('--systemd-cgroup', 'linux.cgroupsPath is systemd\'s "slice:prefix:name" (the VM\'s host cgroup)', false);
  program.showSuggestionAfterError(false);
  program.exitOverride((err) => {
    process.stderr.write(err.exitCode === 0 ? '' : `hull: ${err.message.replace(/^error: /, '')}\n`);
    process.exit(err.exitCode === 0 ? 0 : 2);
  });
  program.configureOutput({ writeErr: () => undefined });

  // No eager process.cwd(): containerd-shim-runc-v2 runs `delete --force` from a bundle directory it may have removed
  // already, and the cwd of a deleted directory throws ENOENT.
  const bundleOption = () => new Option('-b, --bundle <dir>', 'path to the bundle (default: the current directory)');
  const withBundle = <O extends { bundle?: string }>(o: O): O & { bundle: string } => ({ ...o, bundle: o.bundle ?? process.cwd() });
  const compatible = (cmd: Command): Command =>
    cmd
      .option('--console-socket <path>', 'refused: the pty lives inside the VM (use run/exec --tty from a terminal)')
      .option('--no-pivot', 'accepted for compatibility')
      .option('--no-new-keyring', 'accepted for compatibility');

  compatible(
    program
      .command('run')
      .description('create and start a container, wait for it, and delete it')
      .addOption(bundleOption())
      .option('--pid-file <file>', 'write the host pid standing for the container')
      .option('-d, --detach', 'detach from the container', false)
      .argument('<id>'),
  ).action(
    action(program, (g, id: string, o: { bundle?: string; pidFile?: string; detach: boolean; consoleSocket?: string }) => {
      refuseConsoleSocket(o.consoleSocket);
      return commands.run(g, id, withBundle(o));
    }),
  );

  compatible(
    program
      .command('create')
      .description('create a container')
      .addOption(bundleOption())
      .option('--pid-file <file>', 'write the host pid standing for the container')
      .argument('<id>'),
  ).action(
    action(program, (g, id: string, o: { bundle?: string; pidFile?: string; consoleSocket?: string }) => {
      refuseConsoleSocket(o.consoleSocket);
      return commands.create(g, id, withBundle(o));
    }),
  );

  program
    .command('_monitor', { hidden: true })
    .requiredOption('--bundle <dir>')
    .argument('<id>')
    .action(action(program, (g, id: string, o: { bundle: string }) => commands.monitor(g, id, o)));

  program
    .command('start')
    .description('start a created container')
    .argument('<id>')
    .action(action(program, (g, id: string) => commands.start(g, id)));

  program
    .command('state')
    .description('print the OCI state of a container')
    .argument('<id>')
    .action(action(program, (g, id: string) => commands.state(g, id)));

  program
    .command('kill')
    .description('send a signal (default SIGTERM) to the container')
    .option('-a, --all', 'signal every process of the container', false)
    .argument('<id>')
    .argument('[signal]')
    .action(action(program, (g, id: string, signal: string | undefined, o: { all: boolean }) => commands.kill(g, id, signal, o.all)));

  program
    .command('delete')
    .description('delete a container and everything it holds on the host')
    .option('-f, --force', 'kill the container first if it runs', false)
    .argument('<id>')
    .action(action(program, (g, id: string, o: { force: boolean }) => commands.remove(g, id, o.force)));

  program
    .command('exec')
    .description('run another process in a running container')
    .option('-p, --process <file>', 'process.json of the new process')
    .option('-t, --tty', 'allocate a terminal', false)
    .option('--cwd <dir>', 'working directory')
    .option('-e, --env <KEY=VALUE>', 'add an environment variable', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('-u, --user <uid[:gid]>', 'user to run as')
    .option('-d, --detach', 'detach from the process', false)
    .option('--pid-file <file>', 'write the host pid standing for the process')
    .option('--console-socket <path>', 'refused: the pty lives inside the VM (use --tty from a terminal)')
    .argument('<id>')
    .argument('[command...]')
    .passThroughOptions()
    .action(async (id: string, args: string[], o: commands.ExecOptions) => {
      exitCodeOnError = 255; // runc: exec exits 255 on a runtime error, the process's status otherwise
      await action(program, (g) => {
        refuseConsoleSocket((o as { consoleSocket?: string }).consoleSocket);
        return commands.exec(g, id, args, o);
      })();
    });

  program
    .command('_exec', { hidden: true })
    .requiredOption('--process-json <json>')
    .argument('<id>')
    .action(action(program, (g, id: string, o: { processJson: string }) => commands.execMonitor(g, id, o.processJson)));

  program
    .command('ps')
    .description('list the processes of a container')
    .addOption(new Option('-f, --format <format>', 'table or json').default('table'))
    .argument('<id>')
    .action(action(program, (g, id: string, o: { format: string }) => commands.ps(g, id, o.format)));

  program
    .command('list')
    .description('list containers')
    .addOption(new Option('-f, --format <format>', 'table or json').default('table'))
    .option('-q, --quiet', 'print only ids', false)
    .action(action(program, (g, o: { format: string; quiet: boolean }) => commands.list(g, o.format, o.quiet)));

  // What this host offers and what hull uses (docs/config.md). check reads a bad config file as one of its findings.
  program
    .command('check')
    .description('say what this host offers and what hull will use; exit 1 when hull cannot run containers here')
    .addOption(new Option('-f, --format <format>', 'text or json').choices(['text', 'json']).default('text'))
    .action(async (o: { format: string }) => {
      try {
        process.exit(checks.check(o.format));
      } catch (err) {
        process.stderr.write(`hull: ${oneLine(err)}\n`);
        process.exit(1);
      }
    });

  program
    .command('env')
    .description('print the configuration in force, paths and versions (for bug reports)')
    .addOption(new Option('-f, --format <format>', 'toml or json').choices(['toml', 'json']).default('toml'))
    .action(action(program, (_g, o: { format: string }) => checks.env({ root: rootFlag(program), debug: program.opts<GlobalFlags>().debug }, o.format)));

  // A pool of pre-booted VMs for the containers of --root (docs/pool.md).
  const poolCommand = program
    .command('pool')
    .description('keep VMs booted and ready for the containers of --root')
    .argument('[command]')
    .action(
      action(program, (_g, name: string | undefined) => {
        throw invalidArgument(name === undefined ? 'pool needs a command: serve or status' : `unknown pool command "${name}": use serve or status`);
      }),
    );
  poolCommand
    .command('serve')
    .description('keep --size VMs ready, in the foreground, until SIGTERM or SIGINT powers them off')
    .option('--size <n>', 'how many ready VMs to keep (default: pool.size of the config file)')
    .option('--vcpus <n>', 'vCPUs of each VM (default: what a container without limits gets)')
    .option('--memory <MiB>', 'memory of each VM in MiB (default: what a container without limits gets)')
    .option('--nics <n>', 'NICs of each VM, for pods with network interfaces (0-4, default 1)')
    .action(
      action(program, (g, o: pool.PoolServeFlags) => pool.poolServe(g.root, pool.poolLogger(program.opts<GlobalFlags>()), o)),
    );
  poolCommand
    .command('status')
    .description('show the pool of --root: who serves it and its VMs')
    .addOption(new Option('-f, --format <format>', 'table or json').default('table'))
    .action(action(program, (g, o: { format: string }) => pool.printPoolStatus(g.root, o.format)));

  // Prometheus metrics of the sandboxes of --root and of the containerd shims, and of the root's pool (docs/metrics.md).
  program
    .command('metrics')
    .description('print Prometheus metrics of the sandboxes and the pool once, or serve them with --listen')
    .option('--listen [host:port]', 'serve GET /metrics over HTTP until SIGTERM (default address 127.0.0.1:9099)')
    .action(
      action(program, (g, o: MetricsFlags) =>
        metrics(g.root, o.listen === undefined ? g.logger : pool.poolLogger(program.opts<GlobalFlags>()), o),
      ),
    );

  return program;
}

await buildProgram().parseAsync(process.argv);
