/* hull-container-init: sets up one container process inside the guest and execs it.
 *
 * The agent spawns it with the plan on fd 3, a status pipe on fd 4 and a start pipe on fd 5
 * (docs/design.md, "Container init helper"). The process layout:
 *
 *   helper (parent, stays in the agent's pid namespace)
 *     │  create: joins the cgroup, setns()es into the join_ns namespaces (another container's), enters a planned
 *     │  user namespace (its id maps written by a short-lived child left outside it), unshares the rest;
 *     │  exec: joins the cgroup and setns()es into join_pid's
 *     │  writes "pid <n>", relays the child's status lines to fd 4, forwards signals, reaps, exits with the status
 *     └─ child (create: PID 1 of the new pid namespace, or one more process of a joined one)
 *          sets up the rootfs (create), checks the cwd and program as runc does at create (a throwaway child with the
 *          workload's credentials), reports "ready" over a CLOEXEC sync pipe, waits for the start byte on fd 5,
 *          drops privileges and execs. The sync pipe reaching EOF without an error line means exec succeeded.
 */
#include "devfilter.h"
#include "exec.h"
#include "plan.h"
#include "rootfs.h"
#include "security.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define FD_PLAN 3
#define FD_STATUS 4
#define FD_START 5

static const int forwarded_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT };
#define N_FORWARDED (sizeof(forwarded_signals) / sizeof(forwarded_signals[0]))

/* ---------------------------------------------------------------- child */

/* Until exec, a terminating signal ends the child (as PID 1 of a pid namespace it would otherwise ignore it). */
static void abort_handler(int sig)
{
	_exit(128 + sig);
}

static void child_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < N_FORWARDED; i++) {
		int sig = forwarded_signals[i];
		sa.sa_handler = (sig == SIGWINCH || sig == SIGCONT) ? SIG_DFL : abort_handler;
		sigaction(sig, &sa, NULL);
	}
	sa.sa_handler = SIG_DFL;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static void set_rlimits(const struct plan *p)
{
	for (size_t i = 0; i < p->n_rlimits; i++) {
		if (setrlimit((__rlimit_resource_t)p->rlimits[i].resource, &p->rlimits[i].limit) < 0) {
			char what[32];
			snprintf(what, sizeof(what), "%d", p->rlimits[i].resource);
			fail_arg("setrlimit", what);
		}
	}
}

/* process.oomScoreAdj, as runc: written for the container's first process while it is still root (a lower value
 * needs CAP_SYS_RESOURCE) and inherited by everything it forks. Through the guest's /proc: by the child at create,
 * before the rootfs setup; by the parent for an exec, and for a create with a user namespace, before entering it. */
static void set_oom_score_adj(const struct plan *p)
{
	if (!p->has_oom_score_adj)
		return;
	char val[16];
	int len = snprintf(val, sizeof(val), "%d", p->oom_score_adj);
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail("open /proc/self/oom_score_adj");
	if (write_all(fd, val, (size_t)len) < 0)
		fail_arg("write oom_score_adj", val);
	close(fd);
}

static void wait_for_start(void)
{
	status_line("ready");
	char b;
	for (;;) {
		ssize_t n = read(FD_START, &b, 1);
		if (n == 1)
			break;
		if (n == 0)
			_exit(127); /* the agent aborted: no message */
		if (errno != EINTR)
			fail("read start fd");
	}
}

/* The terminal becomes the controlling tty and fds 0-2 (runc does the same with its console). Done as root, after
 * the rootfs setup, so the path is looked up in the container's own devpts instance. */
static void attach_console(const struct plan *p)
{
	char buf[256];
	const char *path = p->console;
	if (strcmp(path, "-") == 0) {
		size_t len = 0;
		for (;;) {
			ssize_t n = read(FD_START, buf + len, sizeof(buf) - 1 - len);
			if (n > 0) {
				len += (size_t)n;
				if (len == sizeof(buf) - 1)
					failx("console path on the start fd is too long");
				continue;
			}
			if (n == 0)
				break;
			if (errno != EINTR)
				fail("read console path");
		}
		buf[len] = '\0';
		if (len == 0 || buf[0] != '/')
			failx("no console path after the start byte");
		path = buf;
	}
	int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		fail_arg("open console", path);
	if (setsid() < 0)
		fail("setsid");
	if (ioctl(fd, TIOCSCTTY, 0) < 0)
		fail_arg("TIOCSCTTY", path);
	for (int i = 0; i <= 2; i++)
		if (dup2(fd, i) < 0)
			fail("dup2 console");
	if (fd > 2)
		close(fd);
}

static void set_user(const struct plan *p)
{
	apply_capabilities_before_setuid(p);
	if (setgroups(p->n_groups, p->groups) < 0)
		fail("setgroups");
	if (setgid(p->gid) < 0)
		fail("setgid");
	if (setuid(p->uid) < 0)
		fail("setuid");
	/* A credential change clears the parent-death signal: set it again. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		fail("prctl pdeathsig");
	apply_capabilities_after_setuid(p);
}

/* Only fds 0-2 reach the workload (the sync pipe is O_CLOEXEC already). */
static void cloexec_from_3(void)
{
#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */) == 0)
		return;
#endif
	long max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 65536)
		max = 65536;
	for (int fd = 3; fd < max; fd++) {
		int fl = fcntl(fd, F_GETFD);
		if (fl >= 0 && !(fl & FD_CLOEXEC))
			fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
	}
}

/* runc's create-time checks, with the workload's own user and capabilities: the working directory (finalizeNamespace)
 * and the program (exec.LookPath, before runc reports ready), so a missing or non-executable program or a bad cwd
 * fails the create, not the start. The user change cannot be undone, so a throwaway child makes the checks and
 * reports a failure on the sync pipe itself. A fork refused by the pids limit skips them: the same errors then come
 * at start, from the steps themselves. */
static void check_before_ready(const struct plan *p)
{
	pid_t pid = fork();
	if (pid < 0) {
		if (errno == EAGAIN)
			return;
		fail("fork for the create-time checks");
	}
	if (pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
			fail("prctl pdeathsig");
		bool in_cwd = enter_cwd_as_root(p);
		set_user(p);
		if (!in_cwd)
			enter_cwd_as_user(p);
		check_executable(p);
		_exit(0);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			fail("wait for the create-time checks");
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return;
	if (WIFEXITED(st))
		_exit(127); /* the checks wrote their error line */
	failx("the create-time checks were killed by signal %d", WTERMSIG(st));
}

/* linux.resources.devices: the filter goes on the container's cgroup at runc's point (its parent sets the cgroup's
 * resources when init reports ready, after the rootfs setup), so the spec's device nodes are made first. */
static void apply_device_filter(const struct plan *p, int cgroup_fd)
{
	if (!p->devcg || cgroup_fd < 0) /* a user namespace's: attached by the parent (enter_user_namespace) */
		return;
	devfilter_attach(p->devcg, cgroup_fd);
	close(cgroup_fd);
}

static _Noreturn void child_main(const struct plan *p, int syncfd, int cgroup_fd)
{
	g_status_fd = syncfd;
	child_signals();
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		fail("prctl pdeathsig");
	close(FD_STATUS);
	umask(022);
	/* An exec, and a create with a user namespace: the parent set these, from outside any user namespace. */
	bool userns = (p->ns_flags & CLONE_NEWUSER) != 0;
	if (p->mode == MODE_CREATE && !userns)
		set_oom_score_adj(p);

	if (p->mode == MODE_CREATE) {
		trace_step("child");
		rootfs_prepare(p);
		trace_step("rootfs-prepared");
		if (!userns)
			set_rlimits(p);
		if (p->hostname && sethostname(p->hostname, strlen(p->hostname)) < 0)
			fail("sethostname");
		rootfs_mount_all(p);
		trace_step("mounted");
		rootfs_pivot(p);
		trace_step("pivoted");
		apply_sysctls(p);
		rootfs_finish(p);
		trace_step("rootfs-finished");
		apply_masked_and_readonly_paths(p);
		trace_step("masked");
		apply_device_filter(p, cgroup_fd);
		trace_step("device-filter");
	}

	prepare_seccomp(p);
	trace_step("seccomp-prepared");
	check_before_ready(p);
	trace_step("checked");
	wait_for_start();
	if (p->console)
		attach_console(p);
	close(FD_START);
	/* Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we still have it (runc does the
	 * same); the filter then also applies to the few syscalls left before exec. */
	if (!p->no_new_privs)
		apply_seccomp(p);
	bool in_cwd = enter_cwd_as_root(p);
	set_user(p);
	if (!in_cwd)
		enter_cwd_as_user(p);
	apply_no_new_privs(p);
	cloexec_from_3();
	if (p->no_new_privs)
		apply_seccomp(p);
	exec_workload(p);
}

/* ---------------------------------------------------------------- parent */

static void join_cgroup(const char *dir)
{
	char path[4096];
	if ((size_t)snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= sizeof(path)) {
		errno = ENAMETOOLONG;
		fail("join cgroup");
	}
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail_arg("join cgroup", dir);
	if (write_all(fd, "0", 1) < 0)
		fail_arg("join cgroup", dir);
	close(fd);
}

/* setns() into join_pid's namespaces that differ from ours; the mount namespace last (it changes our root). */
static void join_namespaces(pid_t pid)
{
	static const struct {
		const char *name;
		int type;
	} ns[] = {
		/* The user namespace first: the others are then entered with its root's privileges (runc's order). */
		{ "user", CLONE_NEWUSER }, { "cgroup", CLONE_NEWCGROUP }, { "ipc", CLONE_NEWIPC }, { "uts", CLONE_NEWUTS },
		{ "net", CLONE_NEWNET },   { "pid", CLONE_NEWPID },       { "mnt", CLONE_NEWNS },
	};
	int fds[sizeof(ns) / sizeof(ns[0])];
	char path[64];
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		fds[i] = -1;
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, ns[i].name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT && (ns[i].type == CLONE_NEWCGROUP || ns[i].type == CLONE_NEWNET || ns[i].type == CLONE_NEWUSER))
				continue; /* kernel without that namespace */
			fail_arg("open", path);
		}
		struct stat theirs, ours;
		snprintf(path, sizeof(path), "/proc/self/ns/%s", ns[i].name);
		if (fstat(fd, &theirs) == 0 && stat(path, &ours) == 0 && theirs.st_ino == ours.st_ino &&
		    theirs.st_dev == ours.st_dev) {
			close(fd);
			continue;
		}
		fds[i] = fd;
	}
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		if (fds[i] < 0)
			continue;
		if (setns(fds[i], ns[i].type) < 0) {
			char what[32];
			snprintf(what, sizeof(what), "%s namespace", ns[i].name);
			fail_arg("setns", what);
		}
		close(fds[i]);
	}
}

/* create: setns() into the namespaces the plan joins. Each is opened and checked against the inode the agent approved
 * before any is entered, so a pid reused since the agent's check is refused, not joined. Runs before unshare() and
 * before fork(): a joined pid namespace takes effect for children only, and the workload is the forked child. */
static void join_planned_namespaces(const struct plan *p)
{
	int fds[PLAN_MAX_JOINS];
	char path[64];
	for (size_t i = 0; i < p->n_joins; i++) {
		const struct plan_join *j = &p->joins[i];
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)j->pid, j->name);
		fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0)
			fail_arg("open", path);
		struct stat st;
		if (fstat(fds[i], &st) < 0)
			fail_arg("stat", path);
		if ((unsigned long long)st.st_ino != j->inode)
			failx("join %s: %s is not the namespace the agent checked (inode %llu, expected %llu): the process exited",
			      j->name, path, (unsigned long long)st.st_ino, j->inode);
	}
	for (size_t i = 0; i < p->n_joins; i++) {
		if (setns(fds[i], p->joins[i].type) < 0) {
			char what[32];
			snprintf(what, sizeof(what), "%s namespace", p->joins[i].name);
			fail_arg("setns", what);
		}
		close(fds[i]);
	}
}

/* Writes one of /proc/<pid>/{uid,gid}_map in a single write(2), as the kernel requires. */
static void write_id_map(pid_t pid, const char *file, const struct plan_idmap *maps, size_t n)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	/* 340 lines of three 10-digit numbers fit. */
	static char buf[PLAN_MAX_ID_MAPS * 36];
	size_t len = 0;
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%u %u %u\n", maps[i].container, maps[i].host, maps[i].size);
	/* The kernel takes the whole map in one write shorter than a page (user_namespaces(7)). */
	if (len >= 4096)
		failx("%s: %zu lines take %zu bytes; the kernel takes at most 4095", file, n, len);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail_arg("open", path);
	if (write(fd, buf, len) != (ssize_t)len)
		fail_arg("write", path);
	close(fd);
}

/* linux.namespaces "user", as runc: a user namespace first, its id maps written from outside it, then root in it, so
 * every namespace unshared after it is owned by it. The maps need CAP_SETUID/CAP_SETGID in the parent namespace, which
 * a process inside the new one does not have: a child forked before the unshare writes them for us. What needs the
 * guest's privileges is done before: process.rlimits and oomScoreAdj (raising a hard limit or lowering the score
 * needs them; children inherit both) and the device cgroup filter (bpf(2); in a user namespace mknod of a device is
 * refused anyway, so the filter being there during the setup changes nothing). The rootfs is not chowned (runc does
 * not either): its files keep the owners the host gave them, seen through virtio-fs. */
static void enter_user_namespace(const struct plan *p, int *cgroup_fd)
{
	int go[2];
	if (pipe2(go, O_CLOEXEC) < 0)
		fail("pipe");
	pid_t parent = getpid();
	pid_t mapper = fork();
	if (mapper < 0)
		fail("fork");
	if (mapper == 0) {
		close(go[1]);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
			fail("prctl pdeathsig");
		char b;
		ssize_t n;
		while ((n = read(go[0], &b, 1)) < 0 && errno == EINTR)
			;
		if (n != 1)
			_exit(127);
		/* setgroups stays "allow", as runc leaves it for a privileged caller: the workload's additionalGids. */
		write_id_map(parent, "uid_map", p->uid_maps, p->n_uid_maps);
		write_id_map(parent, "gid_map", p->gid_maps, p->n_gid_maps);
		_exit(0);
	}
	close(go[0]);
	set_oom_score_adj(p);
	set_rlimits(p);
	if (p->devcg) {
		devfilter_attach(p->devcg, *cgroup_fd);
		close(*cgroup_fd);
		*cgroup_fd = -1;
	}
	if (unshare(CLONE_NEWUSER) < 0) {
		kill(mapper, SIGKILL);
		fail("unshare the user namespace");
	}
	if (write_all(go[1], "x", 1) < 0)
		fail("wake the id map writer");
	close(go[1]);
	int st;
	while (waitpid(mapper, &st, 0) < 0)
		if (errno != EINTR)
			fail("wait for the id map writer");
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		_exit(127); /* it wrote its error line */
	/* Root of the new namespace (container ids 0 must be mapped, as with runc), so the setup can make files. */
	if (setresgid(0, 0, 0) < 0)
		fail("setresgid 0 in the user namespace (is container gid 0 in linux.gidMappings?)");
	if (setresuid(0, 0, 0) < 0)
		fail("setresuid 0 in the user namespace (is container uid 0 in linux.uidMappings?)");
}

static int exit_status(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 127;
}

struct relay {
	int fd; /* the sync pipe's read end, -1 once at EOF */
	char buf[4096];
	size_t len;
};

/* Moves what the child wrote into the sync pipe to fd 4, whole lines only. At EOF fd 4 is closed: after "ready",
 * EOF without an error line tells the agent that exec succeeded. */
static void relay_read(struct relay *r)
{
	ssize_t n = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0) {
		r->len += (size_t)n;
		char *nl;
		while ((nl = memchr(r->buf, '\n', r->len)) != NULL) {
			size_t line = (size_t)(nl - r->buf) + 1;
			(void)write_all(FD_STATUS, r->buf, line);
			memmove(r->buf, r->buf + line, r->len - line);
			r->len -= line;
		}
		if (r->len == sizeof(r->buf)) { /* an overlong line: pass it on as is */
			(void)write_all(FD_STATUS, r->buf, r->len);
			r->len = 0;
		}
		return;
	}
	if (r->len)
		(void)write_all(FD_STATUS, r->buf, r->len);
	r->len = 0;
	close(r->fd);
	r->fd = -1;
	close(FD_STATUS);
}

static _Noreturn void supervise(pid_t child, int syncfd, const sigset_t *sigs)
{
	int sfd = signalfd(-1, sigs, SFD_CLOEXEC);
	if (sfd < 0) {
		kill(child, SIGKILL);
		fail("signalfd");
	}
	struct relay r = { .fd = syncfd, .len = 0 };
	for (;;) {
		struct pollfd pfd[2] = { { sfd, POLLIN, 0 }, { r.fd, POLLIN, 0 } };
		int n = poll(pfd, r.fd >= 0 ? 2 : 1, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			kill(child, SIGKILL);
			fail("poll");
		}
		if (r.fd >= 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)))
			relay_read(&r);
		if (!(pfd[0].revents & POLLIN))
			continue;
		struct signalfd_siginfo si;
		ssize_t got = read(sfd, &si, sizeof(si));
		if (got != (ssize_t)sizeof(si))
			continue;
		if (si.ssi_signo != SIGCHLD) {
			kill(child, (int)si.ssi_signo);
			continue;
		}
		int st;
		pid_t w;
		while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
			if (w != child)
				continue;
			/* The child is gone, so its end of the sync pipe is closed: drain it to EOF. */
			while (r.fd >= 0)
				relay_read(&r);
			_exit(exit_status(st));
		}
	}
}

static void check_fd(int fd, const char *what)
{
	if (fcntl(fd, F_GETFD) < 0) {
		dprintf(2, "hull-container-init: fd %d (%s) is not open; see docs/design.md\n", fd, what);
		_exit(127);
	}
}

int main(void)
{
	check_fd(FD_STATUS, "status");
	check_fd(FD_PLAN, "plan");
	check_fd(FD_START, "start");
	signal(SIGPIPE, SIG_IGN);
	trace_init();

	struct plan p;
	char err[512];
	if (plan_read(FD_PLAN, &p, err, sizeof(err)) < 0)
		failx("%s", err);
	close(FD_PLAN);
	trace_step("plan-read");

	/* Opened before any setns(mnt): the parent's stdio goes there once the child has its own copies. */
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

	/* Block what we forward (and SIGCHLD) before fork, so nothing is lost before signalfd is set up. */
	sigset_t sigs;
	sigemptyset(&sigs);
	for (size_t i = 0; i < N_FORWARDED; i++)
		sigaddset(&sigs, forwarded_signals[i]);
	sigaddset(&sigs, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0)
		fail("sigprocmask");

	int sync[2];
	if (pipe2(sync, O_CLOEXEC) < 0)
		fail("pipe");

	if (p.cgroup)
		join_cgroup(p.cgroup);
	/* Opened here, in the guest's mount namespace: the child attaches the device filter after pivot_root. */
	int cgroup_fd = -1;
	if (p.devcg) {
		cgroup_fd = open(p.cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (cgroup_fd < 0)
			fail_arg("open cgroup", p.cgroup);
	}
	trace_step("cgroup-joined");
	if (p.mode == MODE_CREATE) {
		join_planned_namespaces(&p);
		if (p.ns_flags & CLONE_NEWUSER)
			enter_user_namespace(&p, &cgroup_fd);
		if (unshare(p.ns_flags & ~CLONE_NEWUSER) < 0)
			fail("unshare");
		trace_step("unshared");
	} else {
		/* Before the container's user namespace, if it has one (raising a hard limit or lowering the score needs the
		 * guest's privileges); the child inherits both. */
		set_oom_score_adj(&p);
		set_rlimits(&p);
		join_namespaces(p.join_pid);
	}

	pid_t child = fork();
	if (child < 0)
		fail("fork");
	if (child == 0) {
		close(sync[0]);
		if (devnull >= 0)
			close(devnull);
		child_main(&p, sync[1], cgroup_fd);
	}
	close(sync[1]);
	if (cgroup_fd >= 0)
		close(cgroup_fd);
	close(FD_START);
	status_line("pid %d", (int)child);
	if (devnull >= 0) {
		dup2(devnull, 0);
		dup2(devnull, 1);
		dup2(devnull, 2);
		close(devnull);
	}
	supervise(child, sync[0], &sigs);
}
