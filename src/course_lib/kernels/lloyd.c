/* The fused E-step of Lloyd's k-means on a CPU: for each row x_i of one range of rows,
 *
 *     partial_i = min_j ( ||c_j||^2 - 2 x_i . c_j )      (the squared distance minus ||x_i||^2)
 *     labels_i  = argmin_j ( same ),  first index on ties
 *     sums[labels_i] += x_i                               (optional: the M-step's cluster sums)
 *     inertia += ||x_i - c_{labels_i}||^2                 (optional: the last pass's objective)
 *
 * in one pass over the rows: each row is read once, while it is in the L1 cache, which is what
 * scikit-learn's Cython E-step does (sklearn/cluster/_k_means_lloyd.pyx) and what a chain of
 * separate torch operations (matrix product, minimum, index_add_) cannot do.
 *
 * Layout (set up by course_lib/kmeans.py, _compiled_e_step):
 *   x      (n, d)   row-major, the rows of this call
 *   ct     (d, kp)  the centres transposed, kp = k rounded up to a multiple of JB; padded columns 0
 *   c_sq   (kp,)    ||c_j||^2, +inf in the padded columns (they never win)
 *   labels (n,)     int64, written
 *   partial(n,)     written
 *   sums   (k, d)   accumulated into, or NULL
 *   c      (k, d)   the centres, row-major (read only when inertia is not NULL)
 *   inertia          accumulated into: sum_i ||x_i - c_{labels_i}||^2, or NULL
 *
 * Register blocking: RB rows x JB centres of x.c are accumulated in a fixed-size local array that
 * the compiler keeps in vector registers; the loop over the JB centres is the vectorised one, so
 * no floating-point sum is reordered (no -ffast-math): the result does not depend on the ISA's
 * vector width.  Compiled at first use with `cc -O3 -march=native`; course_lib falls back to its
 * torch E-step when no C compiler is found.
 */
#include <stdint.h>
#include <string.h>

#define RB 4   /* rows per block */
#define JB 16  /* centres per block */

/* JB lanes of T as one value: GCC's and Clang's vector extension (not an ISA intrinsic), split
 * by the compiler into whatever vector registers -march=native offers.  IT is the integer of
 * T's width: a comparison of two VECs gives an IVEC of -1 (true) or 0 per lane, used as a mask
 * to choose between lanes without a branch (a branch on the nearest centre would be mispredicted
 * about as often as the data are unpredictable). */
#define DEFINE_ESTEP(NAME, T, IT, VEC, IVEC)                                                    \
typedef T VEC __attribute__((vector_size(JB * sizeof(T))));                                     \
typedef IT IVEC __attribute__((vector_size(JB * sizeof(T))));                                   \
void NAME(const T *restrict x, int64_t n, int64_t d, const T *restrict ct,                      \
          const T *restrict c_sq, int64_t kp, int64_t *restrict labels,              \
          T *restrict partial, T *restrict sums, const T *restrict c, double *restrict inertia) \
{                                                                                               \
    const IVEC lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};                   \
    for (int64_t i0 = 0; i0 < n; i0 += RB) {                                                    \
        const T *row[RB];                                                                       \
        for (int r = 0; r < RB; r++)     /* the last block repeats its last row */              \
            row[r] = x + (i0 + r < n ? i0 + r : n - 1) * d;                                     \
        VEC best[RB];                    /* per lane: the nearest centre among j = lane mod JB */ \
        IVEC arg[RB];                                                                           \
        for (int64_t j0 = 0; j0 < kp; j0 += JB) {                                               \
            VEC acc[RB] = {0};                            /* RB x JB dot products x.c */        \
            for (int64_t t = 0; t < d; t++) {                                                   \
                VEC c;                                                                          \
                memcpy(&c, ct + t * kp + j0, sizeof c);   /* centres j0..j0+JB, feature t */   \
                for (int r = 0; r < RB; r++) acc[r] += row[r][t] * c;                           \
            }                                                                                   \
            VEC cs;                                                                             \
            memcpy(&cs, c_sq + j0, sizeof cs);                                                  \
            for (int r = 0; r < RB; r++) {                                                      \
                VEC v = cs - (T)2 * acc[r];              /* ||c||^2 - 2 x.c */                 \
                IVEC idx = lane + (IT)j0;                                                       \
                if (j0 == 0) { best[r] = v; arg[r] = idx; continue; }                           \
                IVEC m = v < best[r];                    /* strict: the first index on ties */  \
                best[r] = (VEC)(((IVEC)v & m) | ((IVEC)best[r] & ~m));                          \
                arg[r] = (idx & m) | (arg[r] & ~m);                                             \
            }                                                                                   \
        }                                                                                       \
        for (int r = 0; r < RB && i0 + r < n; r++) {                                            \
            T a[JB];                                                                            \
            IT ia[JB];                                                                          \
            memcpy(a, &best[r], sizeof a);                                                      \
            memcpy(ia, &arg[r], sizeof ia);                                                     \
            for (int w = JB / 2; w > 0; w /= 2)          /* a tree over the lanes */            \
                for (int q = 0; q < w; q++) {                                                   \
                    int take = (a[q + w] < a[q]) | ((a[q + w] == a[q]) & (ia[q + w] < ia[q]));  \
                    a[q] = take ? a[q + w] : a[q];                                              \
                    ia[q] = take ? ia[q + w] : ia[q];                                           \
                }                                                                               \
            labels[i0 + r] = ia[0];                                                             \
            partial[i0 + r] = a[0];                                                             \
            const T *xr = row[r];                                                               \
            if (sums) {                                                                         \
                T *s = sums + ia[0] * d;                                                        \
                for (int64_t t = 0; t < d; t++) s[t] += xr[t];                                  \
            }                                                                                   \
            if (inertia) {                    /* exact: explicit differences, summed in double */ \
                const T *cr = c + ia[0] * d;                                                    \
                T sq = 0;                                                                       \
                for (int64_t t = 0; t < d; t++) sq += (xr[t] - cr[t]) * (xr[t] - cr[t]);        \
                *inertia += (double)sq;                                                         \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
}

DEFINE_ESTEP(lloyd_estep_f32, float, int32_t, vec_f32, ivec_f32)
DEFINE_ESTEP(lloyd_estep_f64, double, int64_t, vec_f64, ivec_f64)
