/* Tests of partitioning: every example in exactly one partition, sizes within one, the same
 * split for the same seed, class proportions kept by "stratified", labels kept apart by
 * "label-skew", file order kept by "contiguous". */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "data/partition.h"

enum { N = 1003, C = 10 };
static uint8_t labels[N];

static void fill_labels(void)
{
    unsigned s = 99;
    for (int i = 0; i < N; i++)
        labels[i] = (uint8_t)((s = s * 1103515245u + 12345u) >> 16) % C;
}

static void check_cover(const cnnelm_partitions *p, int k)
{
    static int seen[N];
    memset(seen, 0, sizeof seen);
    ck_assert_int_eq(p->k, k);
    ck_assert_uint_eq(p->start[0], 0);
    ck_assert_uint_eq(p->start[k], N);
    for (int i = 0; i < k; i++) {
        size_t sz = cnnelm_partition_size(p, i);
        ck_assert(sz == (size_t)(N / k) || sz == (size_t)(N / k + 1));
    }
    for (int i = 0; i < N; i++)
        seen[p->rows[i]]++;
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(seen[i], 1);
}

START_TEST(every_mode_covers_once)
{
    fill_labels();
    cnnelm_partitioning modes[] = { CNNELM_PART_SHUFFLE, CNNELM_PART_STRATIFIED,
                                    CNNELM_PART_CONTIGUOUS, CNNELM_PART_LABEL_SKEW };
    int ks[] = { 1, 2, 3, 7, 10 };
    for (int m = 0; m < 4; m++)
        for (int j = 0; j < 5; j++) {
            cnnelm_partitions p;
            cnnelm_error err;
            ck_assert_int_eq(cnnelm_partition(NULL, N, labels, ks[j], modes[m], 5, &p, &err), 0);
            check_cover(&p, ks[j]);
            cnnelm_partitions_free(&p);
        }
}
END_TEST

START_TEST(seeded)
{
    fill_labels();
    cnnelm_partitions a, b, c;
    cnnelm_error err;
    ck_assert_int_eq(cnnelm_partition(NULL, N, labels, 4, CNNELM_PART_SHUFFLE, 1, &a, &err), 0);
    ck_assert_int_eq(cnnelm_partition(NULL, N, labels, 4, CNNELM_PART_SHUFFLE, 1, &b, &err), 0);
    ck_assert_int_eq(cnnelm_partition(NULL, N, labels, 4, CNNELM_PART_SHUFFLE, 2, &c, &err), 0);
    ck_assert_int_eq(memcmp(a.rows, b.rows, N * sizeof(size_t)), 0);
    ck_assert_int_ne(memcmp(a.rows, c.rows, N * sizeof(size_t)), 0);
    cnnelm_partitions_free(&a);
    cnnelm_partitions_free(&b);
    cnnelm_partitions_free(&c);
}
END_TEST

START_TEST(stratified_keeps_proportions)
{
    fill_labels();
    int total[C] = { 0 };
    for (int i = 0; i < N; i++)
        total[labels[i]]++;
    cnnelm_partitions p;
    cnnelm_error err;
    int k = 4;
    ck_assert_int_eq(cnnelm_partition(NULL, N, labels, k, CNNELM_PART_STRATIFIED, 3, &p, &err), 0);
    for (int i = 0; i < k; i++) {
        int cnt[C] = { 0 };
        for (size_t r = p.start[i]; r < p.start[i + 1]; r++)
            cnt[labels[p.rows[r]]]++;
        for (int c = 0; c < C; c++)
            ck_assert_msg(abs(cnt[c] * k - total[c]) <= k, "partition %d class %d: %d of %d", i, c,
                          cnt[c], total[c]);
    }
    cnnelm_partitions_free(&p);
}
END_TEST

START_TEST(label_skew_separates_classes)
{
    fill_labels();
    cnnelm_partitions p;
    cnnelm_error err;
    ck_assert_int_eq(cnnelm_partition(NULL, N, labels, 5, CNNELM_PART_LABEL_SKEW, 3, &p, &err), 0);
    for (int i = 0; i < 5; i++) {
        int present = 0, cnt[C] = { 0 };
        for (size_t r = p.start[i]; r < p.start[i + 1]; r++)
            cnt[labels[p.rows[r]]]++;
        for (int c = 0; c < C; c++)
            present += cnt[c] > 0;
        ck_assert_msg(present <= 3, "partition %d holds %d classes", i, present);
    }
    cnnelm_partitions_free(&p);
}
END_TEST

START_TEST(contiguous_and_subsets)
{
    fill_labels();
    size_t rows[10] = { 9, 8, 7, 6, 5, 4, 3, 2, 1, 0 };
    cnnelm_partitions p;
    cnnelm_error err;
    ck_assert_int_eq(cnnelm_partition(rows, 10, labels, 3, CNNELM_PART_CONTIGUOUS, 1, &p, &err), 0);
    for (int i = 0; i < 10; i++)
        ck_assert_uint_eq(p.rows[i], rows[i]);
    ck_assert_uint_eq(p.start[1], 3);
    cnnelm_partitions_free(&p);
    ck_assert_int_ne(cnnelm_partition(rows, 10, labels, 11, CNNELM_PART_SHUFFLE, 1, &p, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "empty"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("partition");
    TCase *tc = tcase_create("partition");
    tcase_add_test(tc, every_mode_covers_once);
    tcase_add_test(tc, seeded);
    tcase_add_test(tc, stratified_keeps_proportions);
    tcase_add_test(tc, label_skew_separates_classes);
    tcase_add_test(tc, contiguous_and_subsets);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
