/*
 * lanplug's CNI executable, and its netavark plugin: installed as
 * lanplug-macvlan, lanplug-ipvlan (and lanplug), it forwards one invocation
 * to the lanplug daemon and relays the answer. It reads no JSON and decides
 * nothing: the daemon parses, validates and does the work (src/api/cni/,
 * src/api/netavark/). Only CNI's VERSION and netavark's info are answered
 * here, so that runtimes can list the plugin while the daemon is down.
 *
 * CNI calls it with CNI_COMMAND and the other CNI_* variables and no
 * arguments; netavark (Podman 5 and 6) calls a plugin of the same name with
 * `create`, `setup <netns>`, `teardown <netns>` or `info` as arguments and no
 * CNI_* variables. One executable serves both because the two calls differ
 * only in where the command comes from: a second executable would duplicate
 * the socket, wire and error handling below for two lines of difference, and
 * a launcher in Node would cost ~60 ms per container start. The arguments
 * travel as NETAVARK_COMMAND and NETAVARK_NETNS entries, so the wire and the
 * daemon's socket stay the CNI ones.
 *
 * Wire (src/api/cni/protocol.ts): the variables as NAME=value NUL entries,
 * an empty entry, stdin as given, then a half-close; the answer is the exit
 * code in decimal, a newline, and stdout.
 *
 * Written in C because a runtime execs it for every container start and stop
 * (Podman twice: VERSION, then ADD): a Node start costs ~60 ms, this ~1 ms.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef LANPLUG_CNI_SOCKET
#define LANPLUG_CNI_SOCKET "/var/lib/lanplug/cni.sock"
#endif
#ifndef LANPLUG_VERSION
#define LANPLUG_VERSION "unknown"
#endif

/* What `lanplug uninstall` recognises its own executables by (src/install/cni.ts CNI_IDENTITY). */
__attribute__((used)) static const char IDENTITY[] = "lanplug CNI executable (native/cni-shim.c)";

/* Keep in step with SUPPORTED_VERSIONS in src/api/cni/config.ts. */
static const char VERSION_ANSWER[] =
    "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}\n";

static const char *const FORWARDED[] = {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS",
                                        "CNI_IFNAME",  "CNI_ARGS",        "CNI_PATH"};

static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* A JSON string's body: quotes, backslashes and control characters escaped. */
static void put_json_string(const char *text) {
  for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
    if (*c == '"' || *c == '\\') printf("\\%c", *c);
    else if (*c < 0x20) printf("\\u%04x", *c);
    else putchar(*c);
  }
}

/* Called by netavark (arguments, no CNI_COMMAND) rather than by a CNI runtime. */
static int as_netavark = 0;

/*
 * An error on stdout, as the caller wants it: CNI's {cniVersion, code, msg, details}, or netavark's
 * {"error": "<msg> (<detail>)"}. The message names what to do.
 */
static int fail(int code, const char *msg, const char *detail) {
  if (as_netavark) {
    fputs("{\"error\":\"", stdout);
    put_json_string(msg);
    fputs(" (", stdout);
    put_json_string(detail);
    fputs(")\"}\n", stdout);
    return 1;
  }
  printf("{\"cniVersion\":\"1.1.0\",\"code\":%d,\"msg\":\"", code);
  put_json_string(msg);
  fputs("\",\"details\":\"", stdout);
  put_json_string(detail);
  fputs("\"}\n", stdout);
  return 1;
}

int main(int argc, char **argv) {
  const char *command = getenv("CNI_COMMAND");
  as_netavark = (command == NULL || command[0] == '\0') && argc >= 2;
  if (as_netavark && strcmp(argv[1], "info") == 0) {
    /* Keep in step with infoAnswer in src/api/netavark/commands.ts. */
    fputs("{\"version\":\"", stdout);
    put_json_string(LANPLUG_VERSION);
    fputs("\",\"api_version\":\"1.0.0\"}\n", stdout);
    return 0;
  }
  if (command != NULL && strcmp(command, "VERSION") == 0) {
    fputs(VERSION_ANSWER, stdout);
    return 0;
  }
  const char *path = getenv("LANPLUG_CNI_SOCKET");
  if (path == NULL || path[0] == '\0') path = LANPLUG_CNI_SOCKET;

  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) return fail(4, "LANPLUG_CNI_SOCKET is too long", path);
  strcpy(addr.sun_path, path);
  /* A daemon that drops the connection is an error to report, not a signal to die of. */
  signal(SIGPIPE, SIG_IGN);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  /* A daemon that hangs must not hang the runtime: every call answers well inside a minute. */
  struct timeval limit = {.tv_sec = 55, .tv_usec = 0};
  if (fd >= 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  }
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    /* STATUS: the plugin is not available (50); everything else: try again later (11). */
    int code = command != NULL && strcmp(command, "STATUS") == 0 ? 50 : 11;
    char detail[160];
    snprintf(detail, sizeof detail, "connect %s: %s", path, strerror(errno));
    return fail(code, "the lanplug daemon is not running: start it (systemctl start lanplug, or lanplug daemon)",
                detail);
  }

  char entry[8192];
  for (size_t i = 0; i < sizeof FORWARDED / sizeof FORWARDED[0] && !as_netavark; i++) {
    const char *value = getenv(FORWARDED[i]);
    if (value == NULL) continue;
    int n = snprintf(entry, sizeof entry, "%s=%s", FORWARDED[i], value);
    if (n < 0 || (size_t)n >= sizeof entry) return fail(4, "a CNI variable is too long", FORWARDED[i]);
    if (write_all(fd, entry, (size_t)n + 1) != 0) return fail(5, "cannot write to the lanplug daemon", path);
  }
  /* netavark's arguments: the command, and the namespace path for setup and teardown. */
  const char *const NETAVARK_NAMES[] = {"NETAVARK_COMMAND", "NETAVARK_NETNS"};
  for (int i = 0; as_netavark && i < 2 && i + 1 < argc; i++) {
    int n = snprintf(entry, sizeof entry, "%s=%s", NETAVARK_NAMES[i], argv[i + 1]);
    if (n < 0 || (size_t)n >= sizeof entry) return fail(4, "an argument is too long", NETAVARK_NAMES[i]);
    if (write_all(fd, entry, (size_t)n + 1) != 0) return fail(5, "cannot write to the lanplug daemon", path);
  }
  if (write_all(fd, "", 1) != 0) return fail(5, "cannot write to the lanplug daemon", path);
  char buf[65536];
  for (;;) {
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(5, "cannot read the network configuration from stdin", strerror(errno));
    if (n == 0) break;
    if (write_all(fd, buf, (size_t)n) != 0) return fail(5, "cannot write to the lanplug daemon", path);
  }
  shutdown(fd, SHUT_WR);

  /* The answer: "<code>\n" then stdout. */
  int code = -1;
  int in_code = 1;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(5, "cannot read the lanplug daemon's answer", strerror(errno));
    if (n == 0) break;
    ssize_t at = 0;
    while (in_code && at < n) {
      char c = buf[at++];
      if (c == '\n') {
        in_code = 0;
      } else if (c >= '0' && c <= '9' && code < 1000) {
        code = (code < 0 ? 0 : code * 10) + (c - '0');
      } else {
        return fail(5, "the lanplug daemon's answer is malformed", path);
      }
    }
    if (at < n && write_all(STDOUT_FILENO, buf + at, (size_t)(n - at)) != 0) return 5;
  }
  if (in_code || code < 0) return fail(5, "the lanplug daemon closed the connection without an answer", path);
  return code;
}
