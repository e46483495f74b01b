/*
 * handles.c — the descriptors the VMM gets instead of paths or privileges: listening and connected Unix sockets (so
 * the VMM needs no access to hull's socket directory), files only root may open, and taps (so the VMM needs neither
 * CAP_NET_ADMIN nor /dev/net/tun). Each is opened close-on-exec above PRIVATE_FD_FLOOR and put at the number the
 * VMM's command line names only at the very end (place_passed_fds), so no two can collide on the way.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "launcher.h"

/* Moves a fresh close-on-exec descriptor above the floor; the passed range stays free for place_passed_fds. */
static int lift(int fd, const char *step, const char *arg)
{
    if (fd < 0)
        fail(step, arg);
    int high = fcntl(fd, F_DUPFD_CLOEXEC, PRIVATE_FD_FLOOR);
    if (high < 0)
        fail("move a descriptor above the passed range for", arg);
    close(fd);
    return high;
}

static void unix_address(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, strlen(path) + 1); /* length checked in args.c */
}

static int listen_at(const char *path)
{
    struct sockaddr_un sa;
    unix_address(path, &sa);
    int fd = lift(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "create a socket for", path);
    if (unlink(path) < 0 && errno != ENOENT)
        fail("remove the old socket", path);
    mode_t old = umask(0077); /* only root may connect: the socket is the VMM's control channel */
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc < 0)
        fail("bind", path);
    if (listen(fd, 16) < 0)
        fail("listen on", path);
    return fd;
}

static int connect_to(const char *path)
{
    struct sockaddr_un sa;
    unix_address(path, &sa);
    int fd = lift(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "create a socket for", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        fail("connect to", path);
    return fd;
}

void open_host_handles(struct launch *l)
{
    for (size_t i = 0; i < l->n_listens; i++)
        l->listens[i].fd = listen_at(l->listens[i].what);
    for (size_t i = 0; i < l->n_connects; i++)
        l->connects[i].fd = connect_to(l->connects[i].what);
    for (size_t i = 0; i < l->n_opens; i++)
        l->opens[i].fd = lift(open(l->opens[i].what, O_RDWR | O_CLOEXEC | O_NOCTTY), "open", l->opens[i].what);
}

/*
 * Attaches to the tap `name` in the current network namespace, or creates it there (then it lives as long as the
 * descriptor: it goes with the VMM). The flags are the ones QEMU asks for when it opens a tap by name; QEMU reads
 * them back from the descriptor (TUNGETIFF), so it uses the virtio-net header the same way.
 */
static int open_tap(const char *name)
{
    /* The namespace a tap belongs to is the one current when /dev/net/tun is opened. */
    int fd = lift(open("/dev/net/tun", O_RDWR | O_CLOEXEC), "open /dev/net/tun for tap", name);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    memcpy(ifr.ifr_name, name, strlen(name)); /* < IFNAMSIZ, checked in args.c */
    if (ioctl(fd, TUNSETIFF, &ifr) < 0)
        fail("attach to tap", name);
    return fd;
}

void open_taps_and_netns(struct launch *l)
{
    if (l->tap_netns) {
        int ns = open(l->tap_netns, O_RDONLY | O_CLOEXEC);
        if (ns < 0)
            fail("open the taps' network namespace", l->tap_netns);
        if (setns(ns, CLONE_NEWNET) < 0)
            fail("enter the taps' network namespace", l->tap_netns);
        close(ns);
        for (size_t i = 0; i < l->n_taps; i++)
            l->taps[i].fd = open_tap(l->taps[i].what);
    }
    /* The VMM's own network namespace: empty but for the taps created below, so it reaches no network. */
    if (unshare(CLONE_NEWNET) < 0)
        fail("create a network namespace", NULL);
    if (!l->tap_netns) {
        for (size_t i = 0; i < l->n_taps; i++)
            l->taps[i].fd = open_tap(l->taps[i].what);
    }
}

void place_passed_fds(struct launch *l)
{
    struct passed_fd *lists[] = { l->taps, l->listens, l->connects, l->opens };
    const size_t counts[] = { l->n_taps, l->n_listens, l->n_connects, l->n_opens };
    for (size_t k = 0; k < 4; k++) {
        for (size_t i = 0; i < counts[k]; i++) {
            /* dup2 leaves the copy without close-on-exec; the original above the floor closes at exec */
            if (dup2(lists[k][i].fd, lists[k][i].target) < 0)
                fail("place the descriptor of", lists[k][i].what);
        }
    }
}
