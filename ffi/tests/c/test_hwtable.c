/*
 * The CPU's PASID-translation pages: export into caller pages, single-table and
 * touched-page updates, directory entries, the software walk and every refusal
 * (sizes, alignment, overlapping or missing pages).
 * A program of its own, as every test_*.c (see fixtures.h).
 */
#include <stdint.h>

#include "fixtures.h" /* the shared fixtures, and check.h's CHECK, OK, RUN, FINISH */

/* ---- hardware-format translation tables ---- */

/* A set of page buffers with made-up physical addresses, and a reader for the walk. */
#define NPAGES 8
typedef struct {
    uint8_t *mem[NPAGES];
    uint64_t phys[NPAGES];
} pages_t;

static void pages_init(pages_t *p) {
    int i;
    for (i = 0; i < NPAGES; i++) {
        p->mem[i] = (uint8_t *)aligned_alloc(PASID_PAGE_SIZE, PASID_PAGE_SIZE);
        memset(p->mem[i], 0xAA, PASID_PAGE_SIZE);
        p->phys[i] = 0x100000000ull + (uint64_t)i * 0x1000;
    }
}

static void pages_fini(pages_t *p) {
    int i;
    for (i = 0; i < NPAGES; i++)
        free(p->mem[i]);
}

static pasid_page page_of(pages_t *p, int i) {
    pasid_page pg;
    pg.phys = p->phys[i];
    pg.bytes = p->mem[i];
    pg.len = PASID_PAGE_SIZE;
    return pg;
}

static pasid_walk_result walk(pages_t *p, uint32_t gpasid) {
    pasid_page_ref refs[NPAGES];
    pasid_walk_result r;
    int i;
    for (i = 0; i < NPAGES; i++) {
        refs[i].phys = p->phys[i];
        refs[i].bytes = p->mem[i];
        refs[i].len = PASID_PAGE_SIZE;
    }
    memset(&r, 0xff, sizeof r);
    /* pages 0 and 1 are the low and high directories */
    OK(pasid_walk(p->phys[0], p->phys[1], gpasid, refs, NPAGES, &r));
    return r;
}

static int untouched(const uint8_t *mem) {
    size_t i;
    for (i = 0; i < PASID_PAGE_SIZE; i++)
        if (mem[i] != 0xAA)
            return 0;
    return 1;
}

static void test_hwtable(void) {
    pasid_host *h = new_host(PASID_PLATFORM_P2);
    pasid_guest_id g = new_guest(h, PASID_PLATFORM_P2, 2000);
    pasid_table_page tp[3];
    pasid_pages_touched touched;
    pasid_walk_result r;
    pages_t p;
    uint32_t tables[4], gp = 0, hp = 0, dir = 0, last_shared = 0, local = 0;
    size_t n = 0, off = 0;
    int i, ok;

    pages_init(&p);
    /* 1030 shared gPASIDs fill table 0 and start table 1; then one local. */
    for (i = 0; i < 1030; i++)
        OK(pasid_alloc(h, g, PASID_KIND_SHARED, &last_shared, NULL));
    CHECK(last_shared == 1030);
    OK(pasid_alloc(h, g, PASID_KIND_LOCAL, &local, NULL));
    CHECK_RC(free_confirmed(h, g, 7), PASID_RESULT_OK); /* a hole */

    CHECK_RC(pasid_translation_tables(h, g, NULL, 0, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 2);
    OK(pasid_translation_tables(h, g, tables, 4, &n));
    CHECK(n == 2 && tables[0] == 0 && tables[1] == 1);
    CHECK_RC(pasid_translation_tables(h, g, tables, 4, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_translation_tables(h, 0xbad, tables, 4, &n), PASID_RESULT_NO_SUCH_GUEST);

    /* Refusals, each before any page is written. */
    tp[0].table = 0;
    tp[0].page = page_of(&p, 2);
    tp[1].table = 1;
    tp[1].page = page_of(&p, 3);
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 1),
             PASID_RESULT_MISSING_TABLE_PAGE);
    tp[1].table = 1024;
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2),
             PASID_RESULT_BAD_TABLE_PAGE);
    tp[1].table = 0;
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2),
             PASID_RESULT_BAD_TABLE_PAGE);
    tp[1].table = 1;
    tp[1].page.phys += 8;
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2),
             PASID_RESULT_UNALIGNED_PAGE);
    tp[1].page.phys = p.phys[2];
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2),
             PASID_RESULT_DUPLICATE_PAGE);
    tp[1].page = page_of(&p, 3);
    tp[1].page.len = 100;
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2),
             PASID_RESULT_PAGE_SIZE);
    tp[1].page = page_of(&p, 2); /* same memory as table 0's page */
    tp[1].page.phys = p.phys[3];
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2),
             PASID_RESULT_INVALID_ARGUMENT);
    tp[1].page = page_of(&p, 3);
    tp[1].page.bytes = NULL;
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), NULL, 2),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_export_translation(NULL, g, page_of(&p, 0), page_of(&p, 1), tp, 0),
             PASID_RESULT_NULL_PARAMETER);
    for (i = 0; i < NPAGES; i++)
        CHECK(untouched(p.mem[i]));

    /* The export, then the walk agrees with translate for every gPASID. */
    tp[1].page = page_of(&p, 3);
    OK(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2));
    ok = 1;
    for (gp = 1; gp <= 1031; gp++) {
        int trc = pasid_translate(h, g, gp, &hp);
        r = walk(&p, gp);
        if (trc == PASID_RESULT_OK)
            ok &= r.fault == PASID_FAULT_NONE && r.hpasid == hp;
        else
            ok &= r.fault == PASID_FAULT_ENTRY_INVALID && r.hpasid == 0;
    }
    CHECK(ok);
    r = walk(&p, 7);
    CHECK(r.fault == PASID_FAULT_ENTRY_INVALID && r.index == 7 && r.phys == p.phys[2]);
    r = walk(&p, local);
    CHECK(r.fault == PASID_FAULT_ENTRY_INVALID);
    r = walk(&p, 5 << 10);
    CHECK(r.fault == PASID_FAULT_DIRECTORY_NOT_PRESENT && r.directory == PASID_DIRECTORY_LOW &&
          r.index == 5);
    r = walk(&p, (1u << 19) | 3);
    CHECK(r.fault == PASID_FAULT_DIRECTORY_NOT_PRESENT && r.directory == PASID_DIRECTORY_HIGH &&
          r.index == 0);

    /* Byte-exact format: table 0 entry 1 is valid | hPASID, little-endian. */
    OK(pasid_translate(h, g, 1, &hp));
    {
        uint32_t e = (uint32_t)p.mem[2][4] | (uint32_t)p.mem[2][5] << 8 |
                     (uint32_t)p.mem[2][6] << 16 | (uint32_t)p.mem[2][7] << 24;
        uint64_t d = 0;
        CHECK(e == (0x80000000u | hp));
        for (i = 7; i >= 0; i--)
            d = d << 8 | p.mem[0][i];
        CHECK(d == (p.phys[2] | 1));
    }

    /* Reserved bits make the CPU exit. */
    p.mem[2][4 * 3 + 2] |= 0x10; /* entry 3: bit 20 */
    r = walk(&p, 3);
    CHECK(r.fault == PASID_FAULT_ENTRY_RESERVED && r.index == 3 && r.entry != 0);
    p.mem[0][8] |= 0x2; /* directory entry 1: bit 1 */
    r = walk(&p, 1024);
    CHECK(r.fault == PASID_FAULT_DIRECTORY_RESERVED && r.directory == PASID_DIRECTORY_LOW);

    /* A page the walk cannot read. */
    {
        pasid_page_ref only_dir;
        only_dir.phys = p.phys[0];
        only_dir.bytes = p.mem[0];
        only_dir.len = PASID_PAGE_SIZE;
        OK(pasid_walk(p.phys[0], p.phys[1], 2, &only_dir, 1, &r));
        CHECK(r.fault == PASID_FAULT_UNREADABLE && r.phys == p.phys[2]);
        CHECK_RC(pasid_walk(0, 0, 2, NULL, 1, &r), PASID_RESULT_NULL_PARAMETER);
        CHECK_RC(pasid_walk(0, 0, 2, &only_dir, 1, NULL), PASID_RESULT_NULL_PARAMETER);
        OK(pasid_walk(0, 0, 2, NULL, 0, &r));
        CHECK(r.fault == PASID_FAULT_UNREADABLE && r.phys == 0);
    }

    /* Rewriting a table page restores it. */
    OK(pasid_write_translation_table(h, g, 0, p.mem[2], PASID_PAGE_SIZE));
    r = walk(&p, 3);
    OK(pasid_translate(h, g, 3, &hp));
    CHECK(r.fault == PASID_FAULT_NONE && r.hpasid == hp);
    CHECK_RC(pasid_write_translation_table(h, g, 1024, p.mem[2], PASID_PAGE_SIZE),
             PASID_RESULT_BAD_TABLE_PAGE);
    CHECK_RC(pasid_write_translation_table(h, g, 0, p.mem[2], 10), PASID_RESULT_PAGE_SIZE);
    CHECK_RC(pasid_write_translation_table(h, g, 0, NULL, PASID_PAGE_SIZE),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_write_translation_table(h, 0xbad, 0, p.mem[2], PASID_PAGE_SIZE),
             PASID_RESULT_NO_SUCH_GUEST);

    /* Directory helpers. */
    OK(pasid_directory_of_table(0x201, &dir, &off));
    CHECK(dir == PASID_DIRECTORY_HIGH && off == 8);
    OK(pasid_directory_of_table(5, &dir, NULL));
    CHECK(dir == PASID_DIRECTORY_LOW);
    CHECK_RC(pasid_directory_of_table(5, NULL, &off), PASID_RESULT_NULL_PARAMETER);
    OK(pasid_write_directory_entry(p.mem[0], PASID_PAGE_SIZE, 1, p.phys[3], &dir));
    CHECK(dir == PASID_DIRECTORY_LOW);
    r = walk(&p, 1024);
    CHECK(r.fault == PASID_FAULT_NONE);
    CHECK_RC(pasid_write_directory_entry(p.mem[0], PASID_PAGE_SIZE, 1, p.phys[3] + 1, NULL),
             PASID_RESULT_UNALIGNED_PAGE);
    CHECK_RC(pasid_write_directory_entry(p.mem[0], PASID_PAGE_SIZE, 1024, p.phys[3], NULL),
             PASID_RESULT_BAD_TABLE_PAGE);
    CHECK_RC(pasid_write_directory_entry(p.mem[0], 4095, 1, p.phys[3], NULL),
             PASID_RESULT_PAGE_SIZE);
    CHECK_RC(pasid_write_directory_entry(NULL, PASID_PAGE_SIZE, 1, p.phys[3], NULL),
             PASID_RESULT_NULL_PARAMETER);

    /* Incremental updates: a shared gPASID in a new table (2) changes the directory. */
    {
        uint32_t g2048 = 0;
        for (i = 1032; i <= 2048; i++)
            OK(pasid_alloc(h, g, PASID_KIND_LOCAL, &gp, NULL));
        OK(pasid_alloc(h, g, PASID_KIND_SHARED, &g2048, &touched));
        CHECK(g2048 == 2048); /* 7 and 1032..2047 went to the locals */
        CHECK(touched.changed && touched.directory_changed && touched.table == 2);
        r = walk(&p, g2048);
        CHECK(r.fault == PASID_FAULT_DIRECTORY_NOT_PRESENT);
        CHECK_RC(pasid_write_touched_pages(h, g, &touched, page_of(&p, 4), NULL, 0),
                 PASID_RESULT_NULL_PARAMETER);
        CHECK_RC(pasid_write_touched_pages(h, g, &touched, page_of(&p, 4), p.mem[4],
                                           PASID_PAGE_SIZE),
                 PASID_RESULT_INVALID_ARGUMENT); /* overlapping pages */
        CHECK_RC(pasid_write_touched_pages(h, g, NULL, page_of(&p, 4), p.mem[0],
                                           PASID_PAGE_SIZE),
                 PASID_RESULT_NULL_PARAMETER);
        OK(pasid_write_touched_pages(h, g, &touched, page_of(&p, 4), p.mem[0],
                                     PASID_PAGE_SIZE));
        OK(pasid_translate(h, g, g2048, &hp));
        r = walk(&p, g2048);
        CHECK(r.fault == PASID_FAULT_NONE && r.hpasid == hp);
        /* freeing it changes the table page only */
        OK(pasid_free(h, g, g2048, &touched));
        CHECK(touched.changed && !touched.directory_changed && touched.table == 2);
        OK(pasid_write_touched_pages(h, g, &touched, page_of(&p, 4), NULL, 0));
        r = walk(&p, g2048);
        CHECK(r.fault == PASID_FAULT_ENTRY_INVALID);
        /* flags filled with arbitrary non-zero bytes read as true, never as UB */
        memset(&touched, 0x7f, sizeof touched);
        touched.table = 2;
        OK(pasid_write_touched_pages(h, g, &touched, page_of(&p, 4), p.mem[0], PASID_PAGE_SIZE));
        r = walk(&p, g2048);
        CHECK(r.fault == PASID_FAULT_ENTRY_INVALID && r.phys == p.phys[4]);
        /* nothing changed: nothing to write, but the guest must exist */
        touched.changed = false;
        OK(pasid_write_touched_pages(h, g, &touched, page_of(&p, 4), NULL, 0));
        CHECK_RC(pasid_write_touched_pages(h, 0xbad, &touched, page_of(&p, 4), NULL, 0),
                 PASID_RESULT_NO_SUCH_GUEST);
    }

    pages_fini(&p);
    pasid_host_free(h);
}

int main(void) {
    RUN(test_hwtable);
    return FINISH();
}
