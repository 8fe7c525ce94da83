/* Compiler hints the kernels share: forced inlining, loop unrolling and prefetching, each with a plain-C fallback. */
#ifndef KMC_COMPILER_H
#define KMC_COMPILER_H

/* A small function inlined at every call, so that constant arguments specialise it. */
#if defined(__GNUC__) || defined(__clang__)
#define KMC_ALWAYS_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define KMC_ALWAYS_INLINE static __forceinline
#else
#define KMC_ALWAYS_INLINE static inline
#endif

/* Unroll the next loop completely (its count is a constant in each specialised copy), so that its per-lane
 * locals live in registers.  gcc needs asking at -O2; clang does it unasked (and warns when asked where the
 * count is not a constant); others may just loop. */
#define KMC_PRAGMA(x) _Pragma(#x)
#if defined(__GNUC__) && __GNUC__ >= 8 && !defined(__clang__)
#define KMC_UNROLL(n) KMC_PRAGMA(GCC unroll n)
#else
#define KMC_UNROLL(n)
#endif

/* Ask for the cache line at address p before it is needed (a hint: nothing is read, any address is safe). */
#if defined(__GNUC__) || defined(__clang__)
#define KMC_PREFETCH(p) __builtin_prefetch(p)
#else
#define KMC_PREFETCH(p) ((void)(p))
#endif

#endif
