/*
 * udp_shim.c: an LD_PRELOAD shim that lets the UNMODIFIED libfido2 tools (fido2-token,
 * fido2-cred, fido2-assert) talk to a CTAPHID authenticator over UDP, the "simulator" wire
 * format `fidelio serve` speaks: one 64-byte report per datagram, no report-ID byte, replies
 * to the sender's address.
 *
 *   fido2-token -I udp:127.0.0.1:8111
 *
 * How: the tools only call fido_dev_open(dev, path). For a path "udp:HOST:PORT" this wrapper
 * installs report-level I/O functions (fido_dev_set_io_functions: open/close/read/write over
 * a connected UDP socket) and then calls libfido2's own fido_dev_open, found with
 * dlsym(RTLD_NEXT). Everything above the report level (CTAPHID framing, INIT, KEEPALIVE,
 * CBOR) stays libfido2's own code. Any other path goes to libfido2 untouched.
 *
 * fido_dev_info_manifest is wrapped too: the devices named in FIDELIO_UDP_DEVICES (comma
 * separated "udp:HOST:PORT") are appended to what libfido2 finds, so `fido2-token -L` lists
 * them.
 *
 * FIDELIO_SHIM_DEBUG=1 logs every report to stderr.
 *
 * Build: gcc -shared -fPIC -O2 -Wall -Wextra -Werror -o udp_shim.so udp_shim.c -ldl -lfido2
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <fido.h>

#define UDP_PREFIX "udp:"
#define REPORT_LEN 64

struct udp_dev {
	int fd;
};

static int
debugging(void)
{
	const char *v = getenv("FIDELIO_SHIM_DEBUG");
	return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

static void
hexdump(const char *what, const unsigned char *buf, size_t len)
{
	if (!debugging())
		return;
	fprintf(stderr, "udp_shim: %s", what);
	for (size_t i = 0; i < len; i++)
		fprintf(stderr, "%02x", buf[i]);
	fprintf(stderr, "\n");
}

/* "udp:HOST:PORT" (HOST may be "[v6]") -> a connected datagram socket, or -1. */
static int
udp_connect(const char *path)
{
	char host[256], *port;
	const char *spec = path + strlen(UDP_PREFIX);
	struct addrinfo hints, *res = NULL, *ai;
	int fd = -1, r;

	if (strlen(spec) >= sizeof(host)) {
		fprintf(stderr, "udp_shim: path too long: %s\n", path);
		return -1;
	}
	strcpy(host, spec);
	if ((port = strrchr(host, ':')) == NULL || port[1] == '\0') {
		fprintf(stderr, "udp_shim: expected udp:HOST:PORT, got %s\n", path);
		return -1;
	}
	*port++ = '\0';
	char *h = host;
	size_t hl = strlen(h);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h[hl - 1] = '\0';
		h++;
	}

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_DGRAM;
	if ((r = getaddrinfo(h, port, &hints, &res)) != 0) {
		fprintf(stderr, "udp_shim: %s: %s\n", path, gai_strerror(r));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		fprintf(stderr, "udp_shim: cannot connect to %s: %s\n", path,
		    strerror(errno));
	return fd;
}

static void *
udp_open(const char *path)
{
	struct udp_dev *d;
	int fd;

	if ((fd = udp_connect(path)) < 0)
		return NULL;
	if ((d = calloc(1, sizeof(*d))) == NULL) {
		close(fd);
		return NULL;
	}
	d->fd = fd;
	if (debugging())
		fprintf(stderr, "udp_shim: opened %s\n", path);
	return d;
}

static void
udp_close(void *handle)
{
	struct udp_dev *d = handle;

	if (d == NULL)
		return;
	close(d->fd);
	free(d);
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Reads one report: exactly `len` (64) bytes, waiting at most `ms` milliseconds (-1: block).
 * Returns the number of bytes read, or -1 on timeout or error.
 */
static int
udp_read(void *handle, unsigned char *buf, size_t len, int ms)
{
	struct udp_dev *d = handle;
	unsigned char datagram[2048];
	long long deadline = ms < 0 ? -1 : now_ms() + ms;

	if (d == NULL || len != REPORT_LEN) {
		fprintf(stderr, "udp_shim: read of %zu bytes, expected %d\n", len,
		    REPORT_LEN);
		return -1;
	}
	for (;;) {
		struct pollfd pfd = { .fd = d->fd, .events = POLLIN };
		int wait = -1;
		if (deadline >= 0) {
			long long left = deadline - now_ms();
			wait = left > 0 ? (int)left : 0;
		}
		int r = poll(&pfd, 1, wait);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "udp_shim: poll: %s\n", strerror(errno));
			return -1;
		}
		if (r == 0) {
			if (debugging())
				fprintf(stderr, "udp_shim: read timed out (%d ms)\n", ms);
			return -1;
		}
		ssize_t n = recv(d->fd, datagram, sizeof(datagram), 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			/* ECONNREFUSED: nothing listens on the port (daemon gone). */
			fprintf(stderr, "udp_shim: recv: %s\n", strerror(errno));
			return -1;
		}
		if ((size_t)n != REPORT_LEN) {
			fprintf(stderr, "udp_shim: ignoring a %zd-byte datagram "
			    "(a report is %d bytes)\n", n, REPORT_LEN);
			continue;
		}
		memcpy(buf, datagram, REPORT_LEN);
		hexdump("<- ", buf, REPORT_LEN);
		return REPORT_LEN;
	}
}

/*
 * Writes one report. libfido2 hands over report ID 0 followed by the 64-byte report; the
 * datagram carries the 64 bytes only. Returns `len` (what libfido2 expects) or -1.
 */
static int
udp_write(void *handle, const unsigned char *buf, size_t len)
{
	struct udp_dev *d = handle;

	if (d == NULL || len != REPORT_LEN + 1 || buf[0] != 0) {
		fprintf(stderr, "udp_shim: write of %zu bytes (report id %d), "
		    "expected %d with report id 0\n", len,
		    len > 0 ? buf[0] : -1, REPORT_LEN + 1);
		return -1;
	}
	hexdump("-> ", buf + 1, REPORT_LEN);
	ssize_t n;
	do {
		n = send(d->fd, buf + 1, REPORT_LEN, 0);
	} while (n < 0 && errno == EINTR);
	if (n != REPORT_LEN) {
		fprintf(stderr, "udp_shim: send: %s\n",
		    n < 0 ? strerror(errno) : "short write");
		return -1;
	}
	return (int)len;
}

static const fido_dev_io_t udp_io = {
	.open = udp_open,
	.close = udp_close,
	.read = udp_read,
	.write = udp_write,
};

static void *
next_symbol(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);

	if (f == NULL) {
		fprintf(stderr, "udp_shim: dlsym(RTLD_NEXT, %s): %s\n", name,
		    dlerror());
		abort();
	}
	return f;
}

int
fido_dev_open(fido_dev_t *dev, const char *path)
{
	static int (*real_open)(fido_dev_t *, const char *);
	int r;

	if (real_open == NULL)
		real_open = (int (*)(fido_dev_t *, const char *))next_symbol(
		    "fido_dev_open");
	if (dev != NULL && path != NULL &&
	    strncmp(path, UDP_PREFIX, strlen(UDP_PREFIX)) == 0) {
		if ((r = fido_dev_set_io_functions(dev, &udp_io)) != FIDO_OK) {
			fprintf(stderr, "udp_shim: fido_dev_set_io_functions: %s\n",
			    fido_strerr(r));
			return r;
		}
	}
	return real_open(dev, path);
}

int
fido_dev_info_manifest(fido_dev_info_t *devlist, size_t ilen, size_t *olen)
{
	static int (*real_manifest)(fido_dev_info_t *, size_t, size_t *);
	const char *env = getenv("FIDELIO_UDP_DEVICES");
	char *list, *save = NULL, *path;
	int r;

	if (real_manifest == NULL)
		real_manifest = (int (*)(fido_dev_info_t *, size_t, size_t *))
		    next_symbol("fido_dev_info_manifest");
	r = real_manifest(devlist, ilen, olen);
	if (env == NULL || *env == '\0')
		return r;
	if (r != FIDO_OK) {
		/* No HID/NFC enumeration here (e.g. a container): list ours anyway. */
		if (debugging())
			fprintf(stderr, "udp_shim: libfido2's manifest: %s\n",
			    fido_strerr(r));
		*olen = 0;
	}
	if ((list = strdup(env)) == NULL)
		return FIDO_ERR_INTERNAL;
	for (path = strtok_r(list, ",", &save); path != NULL;
	    path = strtok_r(NULL, ",", &save)) {
		if (*olen >= ilen)
			break;
		if (strncmp(path, UDP_PREFIX, strlen(UDP_PREFIX)) != 0) {
			fprintf(stderr, "udp_shim: FIDELIO_UDP_DEVICES: "
			    "ignoring %s (not udp:HOST:PORT)\n", path);
			continue;
		}
		r = fido_dev_info_set(devlist, *olen, path, "Fidelio",
		    "Fidelio virtual authenticator (UDP)", &udp_io, NULL);
		if (r != FIDO_OK) {
			free(list);
			return r;
		}
		(*olen)++;
	}
	free(list);
	return FIDO_OK;
}
