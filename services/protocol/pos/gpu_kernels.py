"""CUDA C source of the PoS GPU backend kernels (spec 02), compiled at run time by cupy (NVRTC).

Kept as a Python string (not a .cu file) so it ships inside the package without package-data
rules. Semantics mirror the numba CPU kernels exactly: ChaCha8 keystream + F1 (one thread per
block / x), matching (one CUDA block of 512 threads per bucket pair, thread t = left entry t,
shared-memory presence bitmap, block-wide scan for the reference match order and the 512 cap),
Fn (one thread per match, one-block BLAKE3), and the children interleave.
"""

CUDA_SOURCE = r"""
typedef unsigned int u32;
typedef unsigned long long u64;

#define PARAM_BC 15113
#define PARAM_B 119
#define PARAM_C 127
#define PARAM_M 64
#define MAX_BUCKET 512
#define PRESENT_WORDS ((PARAM_BC + 31) / 32)

__device__ __forceinline__ u32 rotl32(u32 x, int n) { return (x << n) | (x >> (32 - n)); }
__device__ __forceinline__ u32 rotr32(u32 x, int n) { return (x >> n) | (x << (32 - n)); }

// ---------------------------------------------------------------- ChaCha8 keystream and F1
#define QR(a, b, c, d)                     \
    a += b; d = rotl32(d ^ a, 16);         \
    c += d; b = rotl32(b ^ c, 12);         \
    a += b; d = rotl32(d ^ a, 8);          \
    c += d; b = rotl32(b ^ c, 7);

extern "C" __global__ void chacha8_blocks(const u32* key, u32* out, long long n_blocks) {
    long long block = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (block >= n_blocks) return;
    u32 s[16], x[16];
    s[0] = 0x61707865u; s[1] = 0x3320646eu; s[2] = 0x79622d32u; s[3] = 0x6b206574u;
    for (int i = 0; i < 8; i++) s[4 + i] = key[i];
    s[12] = (u32)block; s[13] = 0; s[14] = 0; s[15] = 0;
    for (int i = 0; i < 16; i++) x[i] = s[i];
    for (int r = 0; r < 4; r++) {
        QR(x[0], x[4], x[8], x[12]); QR(x[1], x[5], x[9], x[13]);
        QR(x[2], x[6], x[10], x[14]); QR(x[3], x[7], x[11], x[15]);
        QR(x[0], x[5], x[10], x[15]); QR(x[1], x[6], x[11], x[12]);
        QR(x[2], x[7], x[8], x[13]); QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++) out[block * 16 + i] = x[i] + s[i];  // little-endian words
}

extern "C" __global__ void f1_kernel(const unsigned char* stream, int k, long long n, u32* ys) {
    long long x = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (x >= n) return;
    long long bit = (long long)k * x;
    long long byte = bit >> 3;
    u64 window = 0;
    for (int i = 0; i < 8; i++) window = (window << 8) | (u64)stream[byte + i];
    u64 partial = (window >> (64 - k - (int)(bit & 7))) & ((1ull << k) - 1ull);
    ys[x] = (u32)((partial << 6) | ((u64)x >> (k - 6)));
}

// ---------------------------------------------------------------- matching
// One CUDA block (512 threads) per bucket pair b, b+1; thread t owns left entry t.
extern "C" __global__ void match_kernel(const u32* y, const long long* bucket_start,
                                        u32* left_out, u32* right_out, int* pair_count) {
    __shared__ u32 present[PRESENT_WORDS];
    __shared__ unsigned short right_r[MAX_BUCKET];
    __shared__ int scan[2][MAX_BUCKET];
    const int b = blockIdx.x;
    const int t = threadIdx.x;
    const long long l_start = bucket_start[b];
    const int n_left = (int)(bucket_start[b + 1] - l_start);
    const long long r_start = bucket_start[b + 1];
    const int n_right = (int)(bucket_start[b + 2] - r_start);
    for (int i = t; i < PRESENT_WORDS; i += blockDim.x) present[i] = 0;
    __syncthreads();
    const u32 right_base = (u32)(b + 1) * PARAM_BC;
    for (int j = t; j < n_right; j += blockDim.x) {
        u32 r = y[r_start + j] - right_base;
        right_r[j] = (unsigned short)r;
        atomicOr(&present[r >> 5], 1u << (r & 31));
    }
    __syncthreads();
    const int parity = b & 1;
    int high = 0, low = 0, start = 0, count = 0;
    if (t < n_left) {
        int r_left = (int)(y[l_start + t] - (u32)b * PARAM_BC);
        high = r_left / PARAM_C;
        low = r_left % PARAM_C;
        start = PARAM_B - high;
        if (start >= PARAM_M) start = 0;
        for (int s = 0; s < PARAM_M; s++) {
            int m = (start + s) & (PARAM_M - 1);
            int target = ((high + m) % PARAM_B) * PARAM_C + (((2 * m + parity) * (2 * m + parity)) + low) % PARAM_C;
            if ((present[target >> 5] >> (target & 31)) & 1u) {
                // right_r is ascending: count the run equal to target
                int lo = 0, hi = n_right;
                while (lo < hi) { int mid = (lo + hi) >> 1; if (right_r[mid] < target) lo = mid + 1; else hi = mid; }
                while (lo < n_right && right_r[lo] == target) { count++; lo++; }
            }
        }
    }
    // inclusive Hillis-Steele scan of the per-left match counts (blockDim.x == MAX_BUCKET)
    int cur = 0;
    scan[0][t] = count;
    __syncthreads();
    for (int offset = 1; offset < MAX_BUCKET; offset <<= 1) {
        int v = scan[cur][t];
        if (t >= offset) v += scan[cur][t - offset];
        scan[cur ^ 1][t] = v;
        cur ^= 1;
        __syncthreads();
    }
    int position = scan[cur][t] - count;  // exclusive prefix: matches of earlier left entries
    if (t == 0) {
        int total = scan[cur][MAX_BUCKET - 1];
        pair_count[b] = total < MAX_BUCKET ? total : MAX_BUCKET;
    }
    if (count == 0 || position >= MAX_BUCKET) return;
    const long long out_base = (long long)b * MAX_BUCKET;
    for (int s = 0; s < PARAM_M && position < MAX_BUCKET; s++) {
        int m = (start + s) & (PARAM_M - 1);
        int target = ((high + m) % PARAM_B) * PARAM_C + (((2 * m + parity) * (2 * m + parity)) + low) % PARAM_C;
        if ((present[target >> 5] >> (target & 31)) & 1u) {
            int lo = 0, hi = n_right;
            while (lo < hi) { int mid = (lo + hi) >> 1; if (right_r[mid] < target) lo = mid + 1; else hi = mid; }
            while (lo < n_right && right_r[lo] == target && position < MAX_BUCKET) {
                left_out[out_base + position] = (u32)(l_start + t);
                right_out[out_base + position] = (u32)(r_start + lo);
                position++;
                lo++;
            }
        }
    }
}

// ---------------------------------------------------------------- Fn (one-block BLAKE3)
__device__ __constant__ u32 BLAKE3_IV[8] = {0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
                                 0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u};
#define G(a, b, c, d, mx, my)                   \
    v[a] = v[a] + v[b] + (mx); v[d] = rotr32(v[d] ^ v[a], 16); \
    v[c] = v[c] + v[d]; v[b] = rotr32(v[b] ^ v[c], 12);        \
    v[a] = v[a] + v[b] + (my); v[d] = rotr32(v[d] ^ v[a], 8);  \
    v[c] = v[c] + v[d]; v[b] = rotr32(v[b] ^ v[c], 7);

// message permutation between rounds, with literal indices so m stays in registers
#define PERMUTE(m)                                                                   \
    {                                                                                \
        u32 t0 = m[2], t1 = m[6], t2 = m[3], t3 = m[10], t4 = m[7], t5 = m[0];       \
        u32 t6 = m[4], t7 = m[13], t8 = m[1], t9 = m[11], t10 = m[12], t11 = m[5];   \
        u32 t12 = m[9], t13 = m[14], t14 = m[15], t15 = m[8];                        \
        m[0] = t0; m[1] = t1; m[2] = t2; m[3] = t3; m[4] = t4; m[5] = t5; m[6] = t6; \
        m[7] = t7; m[8] = t8; m[9] = t9; m[10] = t10; m[11] = t11; m[12] = t12;      \
        m[13] = t13; m[14] = t14; m[15] = t15;                                       \
    }

__device__ __forceinline__ void blake3_one_block(u32 m[16], u32 block_len, u32 out[8]) {
    u32 v[16];
#pragma unroll
    for (int i = 0; i < 8; i++) v[i] = BLAKE3_IV[i];
#pragma unroll
    for (int i = 0; i < 4; i++) v[8 + i] = BLAKE3_IV[i];
    v[12] = 0; v[13] = 0; v[14] = block_len; v[15] = 1u | 2u | 8u;  // CHUNK_START|CHUNK_END|ROOT
#pragma unroll
    for (int r = 0; r < 7; r++) {
        G(0, 4, 8, 12, m[0], m[1]);
        G(1, 5, 9, 13, m[2], m[3]);
        G(2, 6, 10, 14, m[4], m[5]);
        G(3, 7, 11, 15, m[6], m[7]);
        G(0, 5, 10, 15, m[8], m[9]);
        G(1, 6, 11, 12, m[10], m[11]);
        G(2, 7, 8, 13, m[12], m[13]);
        G(3, 4, 9, 14, m[14], m[15]);
        if (r < 6) PERMUTE(m);
    }
#pragma unroll
    for (int i = 0; i < 8; i++) out[i] = v[i] ^ v[i + 8];
}

__device__ __forceinline__ u64 shl64(u64 x, int s) { return s >= 64 ? 0ull : (x << s); }
__device__ __forceinline__ u64 shr64(u64 x, int s) { return s >= 64 ? 0ull : (x >> s); }

// OR an nbits (<= 64) value into a big-endian bit buffer at bit offset (MSB-first)
__device__ __forceinline__ void or_field64(u64* words, u64 value, int nbits, int offset) {
    if (nbits == 0) return;
    int w = offset >> 6;
    int end = (offset & 63) + nbits;
    if (end <= 64) {
        words[w] |= shl64(value, 64 - end);
    } else {
        words[w] |= shr64(value, end - 64);
        words[w + 1] |= shl64(value, 128 - end);
    }
}

__device__ __forceinline__ void or_field128(u64* words, u64 hi, u64 lo, int nbits, int offset) {
    if (nbits > 64) {
        or_field64(words, hi, nbits - 64, offset);
        or_field64(words, lo, 64, offset + nbits - 64);
    } else {
        or_field64(words, lo, nbits, offset);
    }
}

__device__ __forceinline__ u64 get_field64(const u64* words, int offset, int nbits) {
    int w = offset >> 6;
    int s = offset & 63;
    u64 top = shl64(words[w], s);
    if (s > 0) top |= shr64(words[w + 1], 64 - s);
    return shr64(top, 64 - nbits);
}

__device__ int meta_bits(int k, int table) {
    switch (table) {
        case 1: return k;
        case 2: case 6: return 2 * k;
        case 3: case 4: return 4 * k;
        case 5: return 3 * k;
        default: return 0;
    }
}

extern "C" __global__ void fn_kernel(int k, int table, const u32* parent_y, const u64* parent_hi,
                                     const u64* parent_lo, const u32* left, const u32* right,
                                     long long n, u32* out_y, u64* out_hi, u64* out_lo) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int ys = k + 6;
    const int pb = meta_bits(k, table - 1);
    const u32 block_len = (u32)((ys + 2 * pb + 7) / 8);
    const u32 a = left[i];
    const u32 b = right[i];
    const u64 l_hi = parent_hi[a], l_lo = parent_lo[a], r_hi = parent_hi[b], r_lo = parent_lo[b];
    u64 bits[5] = {0, 0, 0, 0, 0};
    or_field64(bits, (u64)parent_y[a], ys, 0);
    or_field128(bits, l_hi, l_lo, pb, ys);
    or_field128(bits, r_hi, r_lo, pb, ys + pb);
    u32 m[16];
    for (int w = 0; w < 4; w++) {
        m[2 * w] = __byte_perm((u32)(bits[w] >> 32), 0, 0x0123);   // LE word of BE bytes
        m[2 * w + 1] = __byte_perm((u32)bits[w], 0, 0x0123);
    }
    for (int w = 8; w < 16; w++) m[w] = 0;
    u32 h[8];
    blake3_one_block(m, block_len, h);
    u64 hb[5];
    for (int w = 0; w < 4; w++) {
        hb[w] = ((u64)__byte_perm(h[2 * w], 0, 0x0123) << 32) | (u64)__byte_perm(h[2 * w + 1], 0, 0x0123);
    }
    hb[4] = 0;
    out_y[i] = (u32)(hb[0] >> (64 - ys));
    u64 hi = 0, lo = 0;
    if (table == 2 || table == 3) {  // meta_L ‖ meta_R
        if (pb < 64) {
            hi = shl64(l_hi, pb) | shr64(l_lo, 64 - pb);
            lo = shl64(l_lo, pb);
        } else {
            hi = shl64(l_lo, pb - 64);
            lo = 0;
        }
        hi |= r_hi;
        lo |= r_lo;
    } else if (table != 7) {
        int ob = meta_bits(k, table);
        if (ob > 64) {
            hi = get_field64(hb, ys, ob - 64);
            lo = get_field64(hb, ys + ob - 64, 64);
        } else {
            lo = get_field64(hb, ys, ob);
        }
    }
    out_hi[i] = hi;
    out_lo[i] = lo;
}

extern "C" __global__ void interleave_children(const u32* left, const u32* right, const long long* order,
                                               long long n, u32* children) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long src = order[i];
    children[2 * i] = left[src];
    children[2 * i + 1] = right[src];
}
"""
