/*
 * The hooks a VMM expects: the log callback (user data, levels, refusals and events,
 * threads, re-entry) and the size field of structs that may grow (VFIO argsz rules).
 * Built and run by scripts/test-c.sh (plain, ASan+UBSan) and scripts/harden.sh
 * (valgrind). The last line is "N passed, M failed".
 */
#include <pasid.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures.h" /* standard_layout, and check.h's CHECK, OK, RUN, FINISH */

/* ---- the log callback ---- */

typedef struct {
    pthread_mutex_t lock;
    int calls[5]; /* by level */
    char last[512];
    uint32_t last_level;
    pasid_host *reenter; /* if set, the callback calls into the library */
} LogSink;

static void log_to_sink(uint32_t level, const char *message, void *user) {
    LogSink *s = user;
    pasid_host_info info = {.size = sizeof(info)};

    if (s->reenter) {
        /* A failing call from inside the callback is not logged (no recursion), and
         * changing the callback from inside it does not wait for itself. */
        CHECK_RC(pasid_host_get_info(NULL, &info), PASID_RESULT_NULL_PARAMETER);
        pasid_set_log_callback(log_to_sink, user);
        /* No lock of the library is held here: the host can be used. */
        if (s->reenter != (pasid_host *)1) {
            OK(pasid_host_get_info(s->reenter, &info));
        }
    }
    pthread_mutex_lock(&s->lock);
    if (level < 5)
        s->calls[level]++;
    s->last_level = level;
    snprintf(s->last, sizeof s->last, "%s", message);
    pthread_mutex_unlock(&s->lock);
}

static void test_log_off_by_default_and_levels(void) {
    CHECK(strcmp(pasid_log_level_name(PASID_LOG_LEVEL_ERROR), "error") == 0);
    CHECK(strcmp(pasid_log_level_name(PASID_LOG_LEVEL_WARN), "warn") == 0);
    CHECK(strcmp(pasid_log_level_name(PASID_LOG_LEVEL_INFO), "info") == 0);
    CHECK(strcmp(pasid_log_level_name(PASID_LOG_LEVEL_DEBUG), "debug") == 0);
    CHECK(strcmp(pasid_log_level_name(99), "unknown") == 0);
    /* No callback: a refusal is only a code. */
    CHECK_RC(pasid_layout_check(NULL), PASID_RESULT_NULL_PARAMETER);
}

static void test_log_refusals_and_events(void) {
    LogSink s;
    pasid_layout l = standard_layout();
    pasid_guest_config cfg = {.size = sizeof(cfg), .platform = PASID_PLATFORM_P2,
                              .shared_quota = 1};
    pasid_host *h = NULL;
    pasid_guest_id g = 0, g2 = 0;
    uint32_t x = 0;
    uint8_t blob[4096];
    size_t n = 0;

    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.lock, NULL);
    pasid_set_log_callback(log_to_sink, &s);

    OK(pasid_host_new(&l, PASID_PLATFORM_P2, &h));
    CHECK(s.calls[PASID_LOG_LEVEL_INFO] == 1 && strstr(s.last, "created") != NULL);
    OK(pasid_guest_create(h, &cfg, &g));
    OK(pasid_alloc(h, g, PASID_KIND_SHARED, &x, NULL));
    /* A refusal: the function, the code and the core's message with its numbers. */
    CHECK_RC(pasid_alloc(h, g, PASID_KIND_SHARED, &x, NULL), PASID_RESULT_QUOTA_EXCEEDED);
    CHECK(s.calls[PASID_LOG_LEVEL_WARN] == 1 && s.last_level == PASID_LOG_LEVEL_WARN);
    CHECK(strstr(s.last, "pasid_alloc") != NULL);
    CHECK(strstr(s.last, "error 22") != NULL);
    CHECK(strstr(s.last, "quota of 1") != NULL);
    /* Every error result is logged, the C layer's own too. */
    CHECK_RC(pasid_bind(h, g, x, (pasid_rid){0, 1}, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK(s.calls[PASID_LOG_LEVEL_WARN] == 2 && strstr(s.last, "out_programmed is NULL"));
    /* A size query's answer is routine: DEBUG, not WARN. */
    CHECK_RC(pasid_host_guests(h, NULL, 0, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(s.calls[PASID_LOG_LEVEL_DEBUG] == 1 && s.calls[PASID_LOG_LEVEL_WARN] == 2);

    /* Re-entry from inside the callback, on the host being imported into too. */
    OK(pasid_export_guest(h, g, blob, sizeof blob, &n));
    s.reenter = h;
    OK(pasid_import_guest(h, blob, n, NULL, 0, &g2, NULL));
    CHECK(strstr(s.last, "imported") != NULL);
    s.reenter = NULL;
    pasid_host_free(h);
    CHECK(s.calls[PASID_LOG_LEVEL_INFO] == 3 && strstr(s.last, "freed") != NULL);
    s.reenter = (pasid_host *)1;
    CHECK_RC(pasid_layout_check(NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK(s.calls[PASID_LOG_LEVEL_WARN] == 3); /* the inner refusal was not logged */
    s.reenter = NULL;

    /* Off again: nothing more arrives. */
    pasid_set_log_callback(NULL, NULL);
    CHECK_RC(pasid_layout_check(NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK(s.calls[PASID_LOG_LEVEL_WARN] == 3);
    pthread_mutex_destroy(&s.lock);
}

#define THREADS 4
#define ROUNDS 200

static void *refuse_many(void *arg) {
    pasid_host *h = arg;
    pasid_host_info info = {.size = sizeof(info)};
    int i;
    for (i = 0; i < ROUNDS; i++)
        CHECK_RC(pasid_guest_destroy(h, 0xdead), PASID_RESULT_NO_SUCH_GUEST);
    OK(pasid_host_get_info(h, &info));
    return NULL;
}

static void test_log_threads(void) {
    LogSink s;
    pasid_layout l = standard_layout();
    pasid_host *h = NULL;
    pthread_t t[THREADS];
    int i;

    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.lock, NULL);
    OK(pasid_host_new(&l, PASID_PLATFORM_P2, &h));
    pasid_set_log_callback(log_to_sink, &s);
    for (i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, refuse_many, h) == 0);
    for (i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    /* Once this returns no thread runs the callback: the sink may go. */
    pasid_set_log_callback(NULL, NULL);
    CHECK(s.calls[PASID_LOG_LEVEL_WARN] == THREADS * ROUNDS);
    pasid_host_free(h);
    pthread_mutex_destroy(&s.lock);
}

/* ---- struct sizes ---- */

/* What a program built against a newer header might pass: one more field. */
typedef struct {
    pasid_layout v1;
    uint32_t future_field;
    uint32_t future_pad;
} layout_v2;

static void test_struct_sizes_in(void) {
    pasid_layout l = standard_layout();
    layout_v2 big;
    pasid_host *h = NULL;
    char msg[256];
    size_t n;

    OK(pasid_layout_check(&l));
    l.size = 0; /* forgot to set it */
    CHECK_RC(pasid_layout_check(&l), PASID_RESULT_BAD_STRUCT_SIZE);
    CHECK_RC(pasid_host_new(&l, PASID_PLATFORM_P2, &h), PASID_RESULT_BAD_STRUCT_SIZE);
    CHECK(h == NULL);
    pasid_last_error_message(msg, sizeof msg, &n);
    CHECK(strstr(msg, "layout.size is 0") != NULL);
    l.size = sizeof(l) - 4; /* older than the first version */
    CHECK_RC(pasid_layout_check(&l), PASID_RESULT_BAD_STRUCT_SIZE);
    l.size = 8192; /* garbage: never read that far */
    CHECK_RC(pasid_layout_check(&l), PASID_RESULT_BAD_STRUCT_SIZE);
    l.size = sizeof(l) + 1; /* not a multiple of the alignment */
    CHECK_RC(pasid_layout_check(&l), PASID_RESULT_BAD_STRUCT_SIZE);

    /* Newer caller, unknown fields zero: accepted. Set: refused. */
    memset(&big, 0, sizeof big);
    big.v1 = standard_layout();
    big.v1.size = sizeof big;
    OK(pasid_layout_check(&big.v1));
    OK(pasid_host_new(&big.v1, PASID_PLATFORM_P2, &h));
    pasid_host_free(h);
    big.future_field = 1;
    CHECK_RC(pasid_layout_check(&big.v1), PASID_RESULT_BAD_STRUCT_SIZE);
    CHECK(strcmp(pasid_strerror(PASID_RESULT_BAD_STRUCT_SIZE),
                 "struct size field is too small, too large, or has unknown fields set") == 0);
}

typedef struct {
    pasid_host_info v1;
    uint64_t future[2];
} host_info_v2;

typedef struct {
    pasid_rid_mapping v1;
    uint32_t future;
} mapping_v2;

static void test_struct_sizes_out_and_arrays(void) {
    pasid_layout l = standard_layout();
    pasid_guest_config cfg = {.size = sizeof(cfg), .platform = PASID_PLATFORM_P2,
                              .shared_quota = 4};
    pasid_host *src = NULL, *dst = NULL;
    pasid_guest_id g = 0, g2 = 0;
    host_info_v2 big;
    pasid_host_info info;
    pasid_rid vf = {0, 0x0301};
    mapping_v2 map2[1];
    pasid_rid_mapping map[2];
    uint8_t blob[4096];
    size_t len = 0;

    OK(pasid_host_new(&l, PASID_PLATFORM_P2, &src));
    OK(pasid_host_new(&l, PASID_PLATFORM_P2, &dst));

    /* Output: a newer caller's tail is zeroed, size says what was written. */
    memset(&big, 0xa5, sizeof big);
    big.v1.size = sizeof big;
    OK(pasid_host_get_info(src, &big.v1));
    CHECK(big.v1.size == sizeof(pasid_host_info));
    CHECK(big.future[0] == 0 && big.future[1] == 0);
    CHECK(big.v1.layout.size == sizeof(pasid_layout) && big.v1.layout.local_end == 4096);
    memset(&info, 0, sizeof info); /* size 0: refused, nothing written */
    info.guests = 77;
    CHECK_RC(pasid_host_get_info(src, &info), PASID_RESULT_BAD_STRUCT_SIZE);
    CHECK(info.guests == 77);

    /* Arrays: entry 0's size is the stride. */
    OK(pasid_guest_create(src, &cfg, &g));
    OK(pasid_attach(src, g, vf, PASID_DEVICE_KIND_DEDICATED));
    OK(pasid_export_guest(src, g, blob, sizeof blob, &len));
    memset(map2, 0, sizeof map2);
    map2[0].v1.size = sizeof map2[0];
    map2[0].v1.source = vf;
    map2[0].v1.destination = vf;
    CHECK_RC(pasid_check_import(dst, blob, len, &map2[0].v1, 1),
             PASID_RESULT_INVALID_ARGUMENT); /* a zero kind fails closed */
    map2[0].v1.kind = PASID_DEVICE_KIND_SAME_AS_SOURCE;
    OK(pasid_check_import(dst, blob, len, &map2[0].v1, 1));
    map2[0].future = 3;
    CHECK_RC(pasid_check_import(dst, blob, len, &map2[0].v1, 1), PASID_RESULT_BAD_STRUCT_SIZE);
    memset(map, 0, sizeof map);
    map[0].size = sizeof map[0];
    map[0].source = vf;
    map[0].destination = vf;
    map[0].kind = PASID_DEVICE_KIND_DEDICATED;
    map[1] = map[0];
    map[1].size = 0; /* entries disagree */
    CHECK_RC(pasid_import_guest(dst, blob, len, map, 2, &g2, NULL),
             PASID_RESULT_BAD_STRUCT_SIZE);
    map[1].size = sizeof map[1];
    map[1].source.bdf = 0x0302;
    map[1].destination.bdf = 0x0302;
    OK(pasid_import_guest(dst, blob, len, map, 2, &g2, NULL));

    pasid_host_free(src);
    pasid_host_free(dst);
}

int main(void) {
    RUN(test_log_off_by_default_and_levels);
    RUN(test_log_refusals_and_events);
    RUN(test_log_threads);
    RUN(test_struct_sizes_in);
    RUN(test_struct_sizes_out_and_arrays);
    return FINISH();
}
