/*
 * Two VMM-shaped hosts on one machine-wide shared range: each takes its host PASIDs
 * from a real pasid-broker process that this test starts on a fresh socket and kills at
 * the end, so the two never hand out the same host PASID. Also: a layout the broker
 * does not serve, an unreachable socket, NULL arguments.
 *
 * PASID_BROKER_BIN names the broker binary (scripts/test-c.sh and scripts/harden.sh
 * build it and set it). Built and run plain, under ASan+UBSan and under valgrind.
 */
#include "check.h"

#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static char dir[64], sock[128], state[128], conf[128];
static pid_t broker = -1;

static pasid_layout layout_with_end(uint32_t shared_end) {
    pasid_layout l = {
        .size = sizeof(l),
        .width = 20,
        .local_start = 1,
        .local_end = 4096,
        .shared_start = 4096,
        .shared_end = shared_end,
    };
    return l;
}

static int socket_answers(void) {
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0), ok;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, sock, sizeof a.sun_path - 1);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Starts the broker on a fresh directory; 0 on success. */
static int start_broker(void) {
    const char *bin = getenv("PASID_BROKER_BIN");
    char *argv[8];
    FILE *f;
    int i;
    if (!bin) {
        fprintf(stderr, "PASID_BROKER_BIN is not set (scripts/test-c.sh sets it)\n");
        return -1;
    }
    strcpy(dir, "/tmp/pasid-c-broker-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(sock, sizeof sock, "%s/broker.sock", dir);
    snprintf(state, sizeof state, "%s/state.db", dir);
    snprintf(conf, sizeof conf, "%s/broker.toml", dir);
    f = fopen(conf, "w");
    if (!f)
        return -1;
    fprintf(f, "[layout]\nwidth = 20\nlocal = [1, 4096]\nshared = [4096, 4160]\n"
               "[timers]\nquarantine_secs = 1\ngrace_secs = 1\n[caps]\nspare = 32\n");
    fclose(f);
    argv[0] = (char *)bin;
    argv[1] = "--socket";
    argv[2] = sock;
    argv[3] = "--state";
    argv[4] = state;
    argv[5] = "--config";
    argv[6] = conf;
    argv[7] = NULL;
    if (posix_spawn(&broker, bin, NULL, NULL, argv, environ) != 0)
        return -1;
    for (i = 0; i < 2000 && !socket_answers(); i++) {
        struct timespec ms = {0, 10 * 1000 * 1000};
        nanosleep(&ms, NULL);
    }
    return socket_answers() ? 0 : -1;
}

static void stop_broker(void) {
    char path[160];
    if (broker > 0) {
        kill(broker, SIGKILL);
        waitpid(broker, NULL, 0);
        broker = -1;
    }
    /* The broker's files: socket, store (and its WAL files), config, lock. */
    const char *names[] = {"broker.sock", "state.db", "state.db-wal", "state.db-shm",
                           "broker.toml", "state.db.lock", "broker.sock.lock"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static pasid_host *brokered_host(void) {
    pasid_layout l = layout_with_end(4160);
    pasid_host *h = NULL;
    OK(pasid_host_new_brokered(&l, PASID_PLATFORM_P2, sock, &h));
    return h;
}

static void test_two_vmms_never_share_a_host_pasid(void) {
    pasid_host *vmm[2] = {brokered_host(), brokered_host()};
    pasid_guest_config c = {.size = sizeof(c), .platform = PASID_PLATFORM_P2,
                            .shared_quota = 8};
    pasid_guest_id g[2];
    uint32_t gp, hp[2][4];
    int v, i, j;
    pasid_draining d;
    size_t n;

    for (v = 0; v < 2; v++)
        OK(pasid_guest_create(vmm[v], &c, &g[v]));
    for (i = 0; i < 4; i++) {
        for (v = 0; v < 2; v++) {
            OK(pasid_alloc(vmm[v], g[v], PASID_KIND_SHARED, &gp, NULL));
            CHECK(gp == (uint32_t)i + 1); /* each guest numbers its own PASIDs */
            OK(pasid_translate(vmm[v], g[v], gp, &hp[v][i]));
        }
    }
    for (i = 0; i < 4; i++)
        for (j = 0; j < 4; j++)
            CHECK(hp[0][i] != hp[1][j]);
    /* A freed one goes back to the broker only once its teardown is confirmed; the
     * broker keeps it among VMM 0's spares, so VMM 0 gets it again, VMM 1 never. */
    OK(pasid_free(vmm[0], g[0], 1, NULL));
    OK(pasid_alloc(vmm[0], g[0], PASID_KIND_SHARED, &gp, NULL));
    OK(pasid_translate(vmm[0], g[0], gp, &hp[0][1]));
    CHECK(hp[0][1] != hp[0][0]); /* still draining */
    OK(pasid_draining_list(vmm[0], &d, 1, &n));
    OK(pasid_complete_teardown(vmm[0], &d, 1));
    OK(pasid_alloc(vmm[1], g[1], PASID_KIND_SHARED, &gp, NULL));
    OK(pasid_translate(vmm[1], g[1], gp, &hp[1][0]));
    CHECK(hp[1][0] != hp[0][0]);
    OK(pasid_alloc(vmm[0], g[0], PASID_KIND_SHARED, &gp, NULL));
    OK(pasid_translate(vmm[0], g[0], gp, &hp[0][2]));
    CHECK(hp[0][2] == hp[0][0]); /* the lowest of its spares: the one the teardown let go */
    for (v = 0; v < 2; v++)
        pasid_host_free(vmm[v]);
}

static void test_refusals(void) {
    pasid_layout other = layout_with_end(8192);
    pasid_layout l = layout_with_end(4160);
    pasid_host *h = NULL;
    char msg[512];
    size_t n = 0;

    CHECK_RC(pasid_host_new_brokered(&other, PASID_PLATFORM_P2, sock, &h), PASID_RESULT_SOURCE);
    OK(pasid_last_error_message(msg, sizeof msg, &n));
    CHECK(strstr(msg, "8192") != NULL && strstr(msg, "4160") != NULL); /* both layouts */
    CHECK(h == NULL);
    CHECK_RC(pasid_host_new_brokered(&l, PASID_PLATFORM_P2, "/nonexistent/broker.sock", &h),
             PASID_RESULT_SOURCE);
    CHECK_RC(pasid_host_new_brokered(&l, PASID_PLATFORM_P2, NULL, &h),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_host_new_brokered(NULL, PASID_PLATFORM_P2, sock, &h),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_host_new_brokered(&l, PASID_PLATFORM_P2, sock, NULL),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_host_new_brokered(&l, 7, sock, &h), PASID_RESULT_INVALID_ARGUMENT);
}

int main(void) {
    int rc;
    if (start_broker() != 0) {
        fprintf(stderr, "could not start the broker\n");
        stop_broker();
        printf("0 passed, 1 failed\n");
        return 1;
    }
    RUN(test_two_vmms_never_share_a_host_pasid);
    RUN(test_refusals);
    stop_broker();
    rc = FINISH();
    return rc;
}
